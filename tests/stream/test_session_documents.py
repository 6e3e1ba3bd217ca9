"""Session documents (what the changelog stores) and the registry's end-of-session reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from schemas.events import ChatEvent
from stream.engine.session_documents import (
    answer_record,
    from_records,
    marker_record,
    restorable,
    session_records,
)
from stream.engine.sessions import SessionRegistry, SessionState


def _event(content: str, event_id: str, at: datetime) -> ChatEvent:
    return ChatEvent(event_id=event_id, bot_id="b", channel_id="c", user_id="u",
                     content=content, timestamp=at)


class ChangelogTopic:
    """A compacted changelog of one partition: the latest value per key, with its offset."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, Any]] = {}
        self.offset = 0

    def put(self, key: str, document: Any) -> None:
        self.latest[key] = (self.offset, orjson.loads(orjson.dumps(document)))  # through JSON
        self.offset += 1

    def write(self, state: SessionState) -> None:
        """What the changelog writes for an answer: the record in the newest message's slot,
        after the incarnation's marker when the answer opens it."""
        records = session_records(state)
        if records.opens:
            self.put(state.session_id, marker_record(records))
        self.put(f"{state.session_id}/{records.slot}", answer_record(records))

    def drop(self, state: SessionState, history: int) -> None:
        """The tombstones of a session that ended: the slots its window filled, its own key."""
        for n in range(max(1, state.message_count - history + 1), state.message_count + 1):
            self.latest.pop(f"{state.session_id}/{(n - 1) % history}", None)
        self.latest.pop(state.session_id, None)

    def write_version_2(self, state: SessionState) -> None:
        """What a member of version 2 wrote: the message's slot, then a header record."""
        records = session_records(state)
        state.changelog_incarnation = None  # version 2 knew none
        assert records.message is not None
        header = {k: v for k, v in records.header.items() if k != "incarnation"}
        self.put(f"{state.session_id}/{records.slot}", {**records.message, "version": 2})
        self.put(state.session_id, {**header, "version": 2})

    def restore(self, session_id: str, history: int) -> SessionState | None:
        slots = [v for k, v in self.latest.items() if k.startswith(f"{session_id}/")]
        found = restorable(self.latest.get(session_id), slots)
        if found is None:
            return None
        _, header, messages = found
        return from_records(header, messages, now=99.0, history_size=history)


def _record_all(state: SessionState, contents: list[str], emotions: list[float],
                topic: ChangelogTopic, start: datetime, version_2_until: int = 0) -> None:
    for i, content in enumerate(contents):
        emotion = emotions[i] if i < len(emotions) else None
        state.record(_event(content, f"e{i}", start + timedelta(seconds=i)),
                     thread_id=f"t{i // 3}", new_thread=i % 3 == 0, emotion=emotion, now=float(i))
        (topic.write_version_2 if i < version_2_until else topic.write)(state)


@given(contents=st.lists(st.text(max_size=30), max_size=30),
       emotions=st.lists(st.floats(-1, 1), max_size=30),
       history=st.integers(1, 10), version_2_until=st.integers(0, 31))
def test_the_records_of_every_answer_restore_the_same_session(contents, emotions, history,
                                                               version_2_until):
    """Round trip through the record each answer writes (the newest message's slot, with the
    header), also after answers of a version 2 member (a header record beside the slots):
    history window, thread, counters and emotion trajectory survive as they were."""
    state = SessionState.new(("b", "c", "u"), 0.0, history)
    topic = ChangelogTopic()
    _record_all(state, contents, emotions, topic, datetime(2026, 1, 1, tzinfo=UTC),
                version_2_until)
    if not contents:
        return
    restored = topic.restore(state.session_id, history)
    assert restored is not None
    assert restored.snapshot() == state.snapshot()
    assert restored.key == state.key and restored.last_activity == 99.0
    # A restored session goes on with the same incarnation (a session restored from version 2
    # records gets a new one) and writes the records the original would have.
    if version_2_until < len(contents):
        assert restored.changelog_incarnation == state.changelog_incarnation is not None
    else:
        assert restored.changelog_incarnation is None
    again, original = session_records(restored), session_records(state)
    assert again.opens == (version_2_until >= len(contents))
    if not again.opens:
        assert orjson.dumps(again.header) == orjson.dumps(original.header)
    assert {**again.header, "incarnation": None} == {**original.header, "incarnation": None}
    assert orjson.dumps(again.message) == orjson.dumps(original.message)


@given(first=st.integers(1, 30), second=st.integers(1, 30), history=st.integers(1, 10),
       later_history=st.integers(1, 10))
def test_slots_left_by_another_life_of_the_key_never_show(first, second, history,
                                                          later_history):
    """A session that ended (its tombstones lost) or started over without reading the
    changelog (its restore timed out, or the window changed), on top of every slot of an
    earlier life of its key: restored, it is the new life as it was; ended in turn (its
    tombstones cover its own window), nothing of either comes back."""
    topic = ChangelogTopic()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    earlier = SessionState.new(("b", "c", "u"), 0.0, history)
    _record_all(earlier, [f"old {i}" for i in range(first)], [], topic, start)
    later = SessionState.new(("b", "c", "u"), 0.0, later_history)
    _record_all(later, [f"new {i}" for i in range(second)], [], topic, start)
    restored = topic.restore(later.session_id, later_history)
    assert restored is not None and restored.snapshot() == later.snapshot()
    assert all(m.content.startswith("new") for m in restored.recent_messages)
    topic.drop(later, later_history)
    assert topic.restore(later.session_id, later_history) is None


@given(first=st.integers(1, 30), second=st.integers(1, 30), history=st.integers(1, 10),
       next_history=st.integers(1, 10), last_history=st.integers(1, 10))
@example(first=12, second=5, history=10, next_history=5, last_history=10)  # shrunk, then grown
@example(first=20, second=1, history=5, next_history=10, last_history=10)  # grown
def test_a_window_resized_within_a_life_restores_its_newest_messages_without_gaps(
        first, second, history, next_history, last_history):
    """The window's size changed between two members (a rolling deploy), within one life:
    slots written under the old size lie beside newer ones. Restored, the window is the
    newest messages in order, with none missing between them and none the window had
    already let go of."""
    topic = ChangelogTopic()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    state = SessionState.new(("b", "c", "u"), 0.0, history)
    contents = [f"m{i}" for i in range(first + second)]
    _record_all(state, contents[:first], [], topic, start)
    resumed = topic.restore(state.session_id, next_history)
    assert resumed is not None
    for i, content in enumerate(contents[first:], start=first):
        resumed.record(_event(content, f"e{i}", start + timedelta(seconds=i)),
                       thread_id="t", new_thread=False, emotion=None, now=float(i))
        topic.write(resumed)
    restored = topic.restore(state.session_id, last_history)
    assert restored is not None and restored.message_count == first + second
    kept = [m.content for m in restored.recent_messages]
    live = [m.content for m in resumed.recent_messages]
    assert 1 <= len(kept) <= last_history
    assert kept == contents[len(contents) - len(kept):]  # the newest, contiguous
    if last_history <= next_history:
        assert kept == live[len(live) - len(kept):]


def test_a_slot_that_is_not_a_json_object_is_skipped_not_fatal():
    """A corrupt slot value (valid JSON, not an object) costs that record, not the restore."""
    state = SessionState.new(("b", "c", "u"), 0.0, 5)
    topic = ChangelogTopic()
    _record_all(state, ["first", "second"], [], topic, datetime(2026, 1, 1, tzinfo=UTC))
    topic.put(f"{state.session_id}/4", [1, 2])
    restored = topic.restore(state.session_id, 5)
    assert restored is not None and restored.snapshot() == state.snapshot()


def test_a_whole_session_document_of_version_1_is_still_read():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    document = {"version": 1, "key": ["b", "c", "u"], "message_count": 7,
                "recent_messages": [{"event_id": "e6", "content": "hi",
                                     "timestamp": at.isoformat(), "thread_id": "t1"}],
                "current_thread_id": "t1", "thread_count": 2, "emotion_trajectory": [0.5],
                "last_message_at": at.isoformat()}
    state = from_records(document, [], now=1.0, history_size=5)
    assert state.message_count == 7 and [m.event_id for m in state.recent_messages] == ["e6"]
    assert state.thread_count == 2 and list(state.emotion_trajectory) == [0.5]


@pytest.mark.parametrize("document", [
    {"version": 3}, {"version": 4, "key": ["b", "c"]}, {"version": 2, "key": ["only-one"]},
    {"version": 2, "key": ["b", "c"]},
    {"version": 1, "key": ["b", "c"]}, [], "text", None,
])
def test_a_record_of_another_shape_is_refused(document):
    """A corrupt or foreign record raises ValueError (that session starts empty)."""
    with pytest.raises(ValueError, match="not a session"):
        from_records(document, [], now=0.0, history_size=5)


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
    assert not registry.restore(stale, 1.0)
    assert registry.get(("b", "c")) is live
    assert registry.restore(SessionState.new(("b", "d"), 0.0, 5), 1.0)


def test_a_restore_into_a_full_registry_ends_no_session():
    """Restored sessions take free slots only: a full registry keeps its sessions (idle ones
    too, which an eviction would tombstone), and a restore never displaces one it installed."""
    registry, dropped = _registry(max_sessions=3)
    registry.get_or_create(("b", "live"), 0.0, lambda _k: False)
    restored = [SessionState.new(("b", f"r{i}"), 0.0, 5) for i in range(4)]
    installed = [registry.restore(state, 1.0) for state in restored]
    assert installed == [True, True, False, False]
    assert dropped == []
    assert set(registry.keys()) == {("b", "live"), ("b", "r0"), ("b", "r1")}
