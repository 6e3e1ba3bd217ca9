"""Answer one event: the routine both engines share, from pipeline to sink.

Rules, in the order they apply:
1. The pipeline runs inside the event's process span, with the session snapshot the engine
   gives (empty for the sequential engine).
2. A pipeline that raises fails the event: ``sink.failed(item, error)``. A cancelled one (the
   engine stopped) fails it with the ``CancelledError`` and re-raises it; a ``CancelledError``
   while nothing cancels the running task is a step's own, and fails the event with
   ``StrayCancellation``.
3. Otherwise ``on_response`` runs first (the concurrent engine records the event into its
   session there, so the session's next event sees it), then ``sink.answered`` takes it.
Exactly one of ``answered`` / ``failed`` is called per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from schemas.context import ProcessorContext, SessionSnapshot
from schemas.events import ResponseEvent
from stream.engine.sink import Sink
from stream.engine.work import EngineStopped, WorkItem, build_response
from stream.observability.tracing import traced

__all__ = ["PipelineRun", "StrayCancellation", "answer"]

log = logging.getLogger(__name__)


class StrayCancellation(RuntimeError):
    """A step raised ``CancelledError`` though nothing cancelled its event: the event fails
    (dead-lettered by the Kafka sink) instead of being taken for a stop."""


PipelineRun = Callable[[ProcessorContext], Awaitable[tuple[str | None, dict, list[str]]]]


async def answer(
    item: WorkItem,
    session: SessionSnapshot,
    run: PipelineRun,
    sink: Sink,
    clock: Callable[[], float],
    on_response: Callable[[ResponseEvent, float], None] | None = None,
) -> ResponseEvent | None:
    """Run ``item`` through the pipeline and hand it to ``sink``; the response, or None if the
    event failed. Raises only ``CancelledError``."""
    item.started_at = started = clock()
    try:
        with traced(item, started - item.admitted_at):
            reply, outcomes, degraded = await run(ProcessorContext(event=item.event,
                                                                   session=session))
        finished = clock()
        response = build_response(item, reply, outcomes, degraded,
                                  queued_ms=(started - item.admitted_at) * 1000,
                                  processing_ms=(finished - started) * 1000)
        if on_response is not None:
            on_response(response, finished)
    except asyncio.CancelledError as cancelled:
        task = asyncio.current_task()
        if task is None or task.cancelling():  # the engine is stopping: not answered here
            sink.failed(item, cancelled)
            raise
        # Nobody cancelled this event: a step let a cancellation of its own escape (a future
        # some library cancelled). Taken for a stop, it would leave the record neither answered
        # nor dead-lettered, holding its partition's commits back.
        log.error("event %s: a step raised CancelledError without the event being cancelled",
                  item.event.event_id)
        sink.failed(item, StrayCancellation("a step raised CancelledError without the event "
                                            "being cancelled"))
        return None
    except Exception as error:
        if not isinstance(error, EngineStopped):
            log.exception("event %s failed", item.event.event_id)
        sink.failed(item, error)
        return None
    try:
        sink.answered(item, response)
    except Exception:  # a sink must route its own failures; this is a bug, not load
        log.exception("sink failed to take the answer of event %s", item.event.event_id)
    return response
