"""What a processor sees of a conversation. Frozen and picklable: it crosses into worker processes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import ChatEvent


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One earlier message of the same session."""

    event_id: str
    content: str
    timestamp: datetime
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session's state as it was before the current event (oldest message first)."""

    session_id: str
    message_count: int = 0
    recent_messages: tuple[HistoryMessage, ...] = ()
    current_thread_id: str | None = None
    thread_count: int = 0
    last_activity: datetime | None = None
    emotion_trajectory: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    """Input of one processor call.

    ``analysis`` is empty for analysis-stage processors and holds the analysis stage's data
    (processor name -> data) for compose-stage processors such as the reply composer.
    """

    event: ChatEvent
    session: SessionSnapshot
    analysis: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """What one event changes in its session besides its history, as processors report it.

    ``thread_id`` None keeps the current thread; ``emotion`` None adds no trajectory point.
    """

    thread_id: str | None = None
    new_thread: bool = False
    emotion: float | None = None

    def merged(self, other: SessionUpdate) -> SessionUpdate:
        """Both updates together; where both set a field, ``other`` wins."""
        return SessionUpdate(
            thread_id=other.thread_id if other.thread_id is not None else self.thread_id,
            new_thread=self.new_thread or other.new_thread,
            emotion=other.emotion if other.emotion is not None else self.emotion,
        )
