"""Where an engine hands every event it is done with: the one exit of the engine.

Contract, for every admitted event exactly once:
- ``answered(item, response)``: the response is ready. The engine calls it before the next
  event of the same session starts, so a sink that publishes in call order (the Kafka sink
  queues per partition) keeps each session's responses in order. It returns at once and must
  not raise: delivering, and routing a failure to deliver, are the sink's.
- ``failed(item, error)``: the event will not be answered by this engine. ``error`` is an
  ``EngineStopped`` when it was dropped (stop, partition handed over), a ``CancelledError``
  when the engine stopped while processing it, and whatever the processing raised otherwise.
  Synchronous: it is called from cleanup paths too.
Either way the sink ends the event's process span (``end_process_span``), once.

``WaiterSink`` is the sink of the Python API: it resolves each item's ``waiter`` future.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from schemas.events import ResponseEvent
from stream.engine.sessions import SessionState
from stream.engine.work import WorkItem
from stream.observability.counters import EventCounters
from stream.observability.tracing import end_process_span

__all__ = ["SessionLog", "Sink", "WaiterSink"]


class SessionLog(Protocol):
    """Where sessions that end for good (expired, evicted) are reported: the changelog writes
    their tombstones. Sessions released on a hand-over are not reported: their state stays
    for the partition's next owner."""

    def dropped(self, state: SessionState) -> None: ...


class Sink(Protocol):
    counters: EventCounters

    def answered(self, item: WorkItem, response: ResponseEvent) -> None: ...

    def failed(self, item: WorkItem, error: BaseException) -> None: ...


class WaiterSink:
    """Resolves ``item.waiter`` with the response, or with the error (cancelled on a stop)."""

    def __init__(self, counters: EventCounters | None = None) -> None:
        self.counters = counters or EventCounters()

    def answered(self, item: WorkItem, response: ResponseEvent) -> None:
        self.counters.answered += 1
        self.counters.degraded += bool(response.degraded)
        end_process_span(item.trace)
        if item.waiter is not None and not item.waiter.done():
            item.waiter.set_result(response)

    def failed(self, item: WorkItem, error: BaseException) -> None:
        end_process_span(item.trace, error)
        waiter = item.waiter
        if waiter is None or waiter.done():
            return
        if isinstance(error, asyncio.CancelledError):
            waiter.cancel()
        else:
            waiter.set_exception(error)
            waiter.exception()  # retrieved: a dropped item's waiter may have no reader left
