"""One admitted event on its way through an engine, and the response built from it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.events import ChatEvent, Priority, ProcessorOutcome, ResponseEvent, response_id_for
from stream.priority import classify
from stream.records import RecordSource
from stream.sessions import session_id_for, session_key
from stream.settings import SessionScope


@dataclass(slots=True, eq=False)
class WorkItem:
    """An event admitted to an engine, with what is needed to answer, commit and trace it."""

    event: ChatEvent
    session_key: tuple[str, ...]
    session_id: str
    priority: Priority
    admitted_at: float
    future: asyncio.Future[ResponseEvent]
    source: RecordSource | None = None
    trace: Any = None  # an opaque handle owned by the tracing layer
    started_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Deliver = Callable[[WorkItem, ResponseEvent], Awaitable[None]]


class EngineStopped(RuntimeError):
    """The event was not answered because it is no longer this engine's to answer: the engine
    stopped, or the event's partition was handed to another consumer (which will answer it)."""


def fail(item: WorkItem, exc: BaseException) -> None:
    """Resolve ``item``'s future with ``exc`` (or cancel it), unless it is already resolved."""
    if item.future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        item.future.cancel()
    else:
        item.future.set_exception(exc)
        item.future.exception()  # mark retrieved: a dropped item's future may have no reader


def admit(event: ChatEvent, scope: SessionScope, now: float, source: RecordSource | None,
          trace: Any) -> WorkItem:
    """A new work item: session key and id by scope, priority by the admission rules."""
    key = session_key(event, scope)
    return WorkItem(
        event=event, session_key=key, session_id=session_id_for(key), priority=classify(event),
        admitted_at=now, future=asyncio.get_running_loop().create_future(), source=source,
        trace=trace,
    )


async def wait_for_idle(idle: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``idle`` is set; False if the timeout passed first."""
    try:
        async with asyncio.timeout(timeout_s):
            await idle.wait()
        return True
    except TimeoutError:
        return False


def build_response(
    item: WorkItem,
    reply: str | None,
    outcomes: dict[str, ProcessorOutcome],
    degraded: list[str],
    *,
    queued_ms: float,
    processing_ms: float,
) -> ResponseEvent:
    event = item.event
    return ResponseEvent(
        response_id=response_id_for(event.event_id, event.bot_id),
        in_reply_to=event.event_id,
        bot_id=event.bot_id,
        channel_id=event.channel_id,
        user_id=event.user_id,
        session_id=item.session_id,
        priority=item.priority,
        reply=reply,
        analysis=outcomes,
        degraded=degraded,
        queued_ms=round(queued_ms, 3),
        processing_ms=round(processing_ms, 3),
        processed_at=datetime.now(UTC),
    )
