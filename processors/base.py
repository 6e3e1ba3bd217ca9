"""The processor contract: one analysis step, how it runs, and how long it may take."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from schemas.context import ProcessorContext, SessionUpdate


class ExecutionKind(StrEnum):
    """Where a processor runs.

    ASYNC: a coroutine on the event loop. INLINE: a plain function called on the event loop,
    for CPU steps of tens of microseconds, where a hop to a pool would cost more than the step
    (it blocks the loop while it runs and cannot be timed out). THREAD: the thread pool, for
    blocking I/O. PROCESS: the process pool, for CPU steps long enough to pay for the hop.

    An ASYNC processor whose coroutine never suspends may say so with ``never_waits = True``:
    when every step of a pipeline is INLINE or says so, the engine answers an event on the
    caller's stack without a task of its own (``processors.eager``). The step's own deadline
    (and the retry backoff of a failed INLINE step) still waits in a task of the event's own;
    a coroutine that says so and then enters a cancel scope of its own (``asyncio.timeout``,
    anyio) before suspending would bind that scope to the caller's task.
    """

    ASYNC = "async"
    INLINE = "inline"
    THREAD = "thread"
    PROCESS = "process"


class Stage(StrEnum):
    """Analysis processors run side by side; compose processors run after them, seeing their data."""

    ANALYSIS = "analysis"
    COMPOSE = "compose"


class TransientProcessorError(Exception):
    """A failure worth retrying (a timeout upstream, a dropped connection)."""


@runtime_checkable
class Processor(Protocol):
    """One step of the pipeline.

    ``process`` returns a JSON-serialisable dict. For ``ASYNC`` it is a coroutine function; for
    ``THREAD`` and ``PROCESS`` a plain function. A ``PROCESS`` processor must be picklable (its
    instance is sent to the worker process) and must not rely on parent-process state.
    Raising ``TransientProcessorError`` asks for a retry; any other exception fails the step.

    A ``PROCESS`` processor may also define ``worker_context(context) -> ProcessorContext``,
    called in the parent before the hop to a worker process, to send only what it needs
    (pickling the whole message history costs more than many analyses).
    """

    name: str
    kind: ExecutionKind
    stage: Stage
    timeout_s: float

    def process(self, context: ProcessorContext) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        ...


@runtime_checkable
class UpdatesSession(Protocol):
    """Optional for a processor: how its ok output changes the session (thread, emotion).

    The engine applies the merged updates of all such processors after each event, so it never
    needs to know which processor produces what.
    """

    def session_update(self, data: Mapping[str, Any]) -> SessionUpdate: ...
