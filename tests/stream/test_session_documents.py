"""Session documents (what the changelog stores) and the registry's end-of-session reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import ChatEvent
from stream.engine.session_documents import from_document, to_document
from stream.engine.sessions import SessionRegistry, SessionState


def _event(content: str, event_id: str, at: datetime) -> ChatEvent:
    return ChatEvent(event_id=event_id, bot_id="b", channel_id="c", user_id="u",
                     content=content, timestamp=at)


@given(contents=st.lists(st.text(max_size=30), max_size=30),
       emotions=st.lists(st.floats(-1, 1), max_size=30),
       history=st.integers(1, 10))
def test_a_document_restores_the_same_session(contents, emotions, history):
    """Round trip: history window, thread, counters and emotion trajectory survive as they were."""
    state = SessionState.new(("b", "c", "u"), 0.0, history)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i, content in enumerate(contents):
        emotion = emotions[i] if i < len(emotions) else None
        state.record(_event(content, f"e{i}", start + timedelta(seconds=i)),
                     thread_id=f"t{i // 3}", new_thread=i % 3 == 0, emotion=emotion, now=float(i))
    encoded = orjson.dumps(to_document(state))  # as the changelog stores it
    restored = from_document(orjson.loads(encoded), now=99.0, history_size=history)
    assert restored.snapshot() == state.snapshot()
    assert restored.key == state.key and restored.last_activity == 99.0
    # The window encoded message by message when recorded reads as the window encoded whole,
    # also after a restore.
    state.history_json.clear()
    assert orjson.loads(encoded) == orjson.loads(orjson.dumps(to_document(state)))
    assert orjson.dumps(to_document(restored)) == encoded


@pytest.mark.parametrize("document", [
    {"version": 2}, {"version": 1, "key": ["only-one"]}, {"version": 1, "key": ["b", "c"]},
    [], "text", None,
])
def test_a_document_of_another_shape_is_refused(document):
    """A corrupt or foreign record raises ValueError (that session starts empty)."""
    with pytest.raises(ValueError, match="not a session document"):
        from_document(document, now=0.0, history_size=5)


def _registry(max_sessions: int = 2) -> tuple[SessionRegistry, list[tuple[str, ...]]]:
    registry = SessionRegistry(max_sessions=max_sessions, idle_timeout_s=10, history_size=5)
    dropped: list[tuple[str, ...]] = []
    registry.on_dropped = lambda state: dropped.append(state.key)
    return registry, dropped


def test_expired_and_evicted_sessions_are_reported_released_ones_are_not():
    """Expiry and eviction end a session for good (tombstone); a release hands it over."""
    registry, dropped = _registry()
    idle = lambda _key: False  # noqa: E731
    registry.get_or_create(("b", "1"), 0.0, idle)
    registry.get_or_create(("b", "2"), 0.0, idle)
    registry.get_or_create(("b", "3"), 1.0, idle)  # full: evicts b/1
    registry.release(lambda key: key == ("b", "2"))
    registry.expire_idle(100.0, idle)  # b/3 expires
    assert dropped == [("b", "1"), ("b", "3")]


def test_a_restored_session_never_replaces_a_live_one():
    """restore() installs a session unless its key is live already (the live one is newer)."""
    registry, _ = _registry()
    live = registry.get_or_create(("b", "c"), 0.0, lambda _k: False)
    stale = SessionState.new(("b", "c"), 0.0, 5)
    assert not registry.restore(stale, 1.0, lambda _k: False)
    assert registry.get(("b", "c")) is live
    assert registry.restore(SessionState.new(("b", "d"), 0.0, 5), 1.0, lambda _k: False)
