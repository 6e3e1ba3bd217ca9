"""Shared builders for processor tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.context import HistoryMessage, ProcessorContext, SessionSnapshot
from schemas.events import ChatEvent

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def build_context(
    content: str,
    *,
    history: Sequence[str | tuple[str, str | None]] = (),
    session_id: str = "bot/chan/alice",
    bot_id: str = "bot",
    event_id: str = "e-now",
    at: datetime | None = None,
    current_thread_id: str | None = None,
    thread_count: int = 0,
    last_activity: datetime | None = None,
    emotions: tuple[float, ...] = (),
    analysis: Mapping[str, Mapping[str, Any]] | None = None,
) -> ProcessorContext:
    """A context whose history messages are e0, e1, ... one minute apart before ``at``."""
    at = at or T0
    messages = []
    for i, item in enumerate(history):
        text, thread = item if isinstance(item, tuple) else (item, current_thread_id)
        stamp = at - timedelta(minutes=len(history) - i)
        messages.append(HistoryMessage(f"e{i}", text, stamp, thread))
    session = SessionSnapshot(
        session_id=session_id,
        message_count=len(messages),
        recent_messages=tuple(messages),
        current_thread_id=current_thread_id,
        thread_count=thread_count,
        last_activity=last_activity if last_activity is not None else (
            messages[-1].timestamp if messages else None
        ),
        emotion_trajectory=emotions,
    )
    event = ChatEvent(
        event_id=event_id, bot_id=bot_id, channel_id="chan", user_id="alice",
        content=content, timestamp=at,
    )
    return ProcessorContext(event=event, session=session, analysis=dict(analysis or {}))


@pytest.fixture
def make_context() -> Callable[..., ProcessorContext]:
    return build_context


@pytest.fixture
def t0() -> datetime:
    """The default event time of ``make_context``."""
    return T0
