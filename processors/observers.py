"""The pipeline's tracing hook: told of every attempt and every outcome of every step."""

from __future__ import annotations

from typing import Protocol

from schemas.events import ProcessorOutcome

__all__ = ["NullObserver", "PipelineObserver"]


class PipelineObserver(Protocol):
    """Tracing hook. Called on the event loop; must not block. Exceptions are logged and ignored."""

    def on_attempt(self, name: str, attempt: int, error: BaseException | None) -> None: ...

    def on_outcome(self, name: str, outcome: ProcessorOutcome) -> None: ...


class NullObserver:
    """The default observer: does nothing."""

    def on_attempt(self, name: str, attempt: int, error: BaseException | None) -> None:
        return None

    def on_outcome(self, name: str, outcome: ProcessorOutcome) -> None:
        return None
