"""A session's state as a JSON document: what the changelog stores and restores.

Rules:
1. The document holds what the engine cannot derive: the key, counters, the history window,
   the thread and the emotion trajectory (``version`` 1). Caches and the memory index are not
   stored; processors rebuild them from the restored history on the session's next event.
2. ``from_document`` refuses (``ValueError``) a document of another version or shape, so a
   corrupt changelog record costs that one session its history, never the member.
3. Times: ``last_message_at`` is wall clock (kept); ``created_at`` and ``last_activity`` are the
   restoring member's monotonic ``now`` (monotonic clocks do not travel between processes).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from schemas.context import HistoryMessage
from stream.engine.sessions import (
    EMOTION_TRAJECTORY_SIZE,
    SessionKey,
    SessionState,
    message_json,
)

__all__ = ["DOCUMENT_VERSION", "from_document", "to_document"]

DOCUMENT_VERSION = 1


def to_document(state: SessionState) -> dict[str, Any]:
    """The document, to be encoded by orjson: history messages stay dataclasses and times stay
    datetimes, which orjson writes as objects and RFC 3339 strings in C (built per answer, so
    no Python-level conversion here)."""
    # The window as encoded when each message was recorded, unless it was filled otherwise.
    history = state.history_json if len(state.history_json) == len(state.recent_messages) \
        else state.recent_messages
    return {
        "version": DOCUMENT_VERSION,
        "key": state.key,
        "message_count": state.message_count,
        "recent_messages": tuple(history),
        "current_thread_id": state.current_thread_id,
        "thread_count": state.thread_count,
        "emotion_trajectory": tuple(state.emotion_trajectory),
        "last_message_at": state.last_message_at,
    }


def from_document(document: Any, now: float, history_size: int) -> SessionState:
    """The session an orjson-decoded document describes; ``ValueError`` when it is not a valid
    document."""
    try:
        if document["version"] != DOCUMENT_VERSION:
            raise ValueError(f"session document version {document['version']!r} is unknown")
        key: SessionKey = tuple(str(part) for part in document["key"])
        if len(key) not in (2, 3):
            raise ValueError(f"a session key has 2 or 3 parts, not {len(key)}")
        state = SessionState.new(key, now, history_size)
        state.message_count = int(document["message_count"])
        state.recent_messages.extend(
            HistoryMessage(str(m["event_id"]), str(m["content"]),
                           datetime.fromisoformat(m["timestamp"]),
                           None if m["thread_id"] is None else str(m["thread_id"]))
            for m in document["recent_messages"])
        state.history_json.extend(message_json(m) for m in state.recent_messages)
        state.current_thread_id = document["current_thread_id"]
        state.thread_count = int(document["thread_count"])
        state.emotion_trajectory = deque(
            (float(x) for x in document["emotion_trajectory"]), maxlen=EMOTION_TRAJECTORY_SIZE)
        last = document["last_message_at"]
        state.last_message_at = datetime.fromisoformat(last) if last else None
        return state
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a session document: {type(exc).__name__}: {exc}") from None
