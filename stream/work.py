"""One admitted event on its way through an engine, and the response built from it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.events import ChatEvent, Priority, ProcessorOutcome, ResponseEvent, response_id_for
from stream.records import RecordSource


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
