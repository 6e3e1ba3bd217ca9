"""One admitted event on its way through an engine, and the response built from it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.events import (
    SCHEMA_VERSION,
    ChatEvent,
    Priority,
    ProcessorOutcome,
    ResponseEvent,
    response_id_for,
    to_microsecond,
)
from schemas.trusted import trusted
from stream.engine.priority import classify
from stream.engine.sessions import SessionKey, session_id_for, session_key
from stream.settings import SessionScope

__all__ = ["EngineStopped", "WorkItem", "admit", "build_response", "wait_for_idle"]


@dataclass(slots=True, eq=False)
class WorkItem:
    """An event admitted to an engine, with what is needed to answer, commit and trace it.

    ``source`` and ``trace`` are opaque to the engine: they belong to the layer that submitted
    the event (the Kafka member's record source, the tracing layer's span) and come back to it
    through the engine's sink. ``waiter``, when given, is resolved by a ``WaiterSink``.
    """

    event: ChatEvent
    session_key: SessionKey
    session_id: str
    priority: Priority
    admitted_at: float
    source: Any = None
    trace: Any = None
    waiter: asyncio.Future[ResponseEvent] | None = None
    started_at: float | None = None
    session_state: Any = None  # the session's records after this event, for a changelog

    @property
    def partition(self) -> Any:
        """Where the event came from, for hand-overs (None for events submitted directly)."""
        return getattr(self.source, "tp", None)


class EngineStopped(RuntimeError):
    """The event was not answered because it is no longer this engine's to answer: the engine
    stopped, or the event's partition was handed to another consumer (which will answer it)."""


def admit(event: ChatEvent, scope: SessionScope, now: float, source: Any = None,
          trace: Any = None, waiter: asyncio.Future[ResponseEvent] | None = None) -> WorkItem:
    """A new work item: session key and id by scope, priority by the admission rules."""
    key = session_key(event, scope)
    return WorkItem(
        event=event, session_key=key, session_id=session_id_for(key), priority=classify(event),
        admitted_at=now, source=source, trace=trace, waiter=waiter,
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
    # Built unvalidated: every field comes from the engine, already typed.
    return trusted(ResponseEvent, {
        "response_id": response_id_for(event.event_id, event.bot_id),
        "in_reply_to": event.event_id,
        "bot_id": event.bot_id,
        "channel_id": event.channel_id,
        "user_id": event.user_id,
        "session_id": item.session_id,
        "priority": item.priority,
        "reply": reply,
        "analysis": outcomes,
        "degraded": degraded,
        "queued_ms": to_microsecond(queued_ms),
        "processing_ms": to_microsecond(processing_ms),
        "processed_at": datetime.now(UTC),
        "schema_version": SCHEMA_VERSION,
    })
