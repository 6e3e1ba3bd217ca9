"""What the processors need to know of the configuration, as read-only protocols.

The service's settings model satisfies them structurally, so processors never import the
service: the wiring hands its settings in, and a plugin factory receives the same object.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["PipelineSettings", "ProcessorSettings", "Secret"]


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


class PipelineSettings(Protocol):
    """Pools, retries and circuit breakers of the pipeline."""

    @property
    def max_worker_processes(self) -> int: ...
    @property
    def max_worker_threads(self) -> int: ...
    @property
    def processor_retries(self) -> int: ...
    @property
    def circuit_failure_threshold(self) -> int: ...
    @property
    def circuit_cooldown_seconds(self) -> float: ...


class ProcessorSettings(Protocol):
    """Step timeouts and the reply responder of the built-in processors."""

    @property
    def processor_timeout_seconds(self) -> float: ...
    @property
    def responder(self) -> str: ...
    @property
    def openai_base_url(self) -> str: ...
    @property
    def openai_model(self) -> str: ...
    @property
    def openai_api_key(self) -> Secret | None: ...
    @property
    def openai_timeout_seconds(self) -> float: ...
