from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.context import SessionSnapshot
from schemas.events import ChatEvent
from stream.engine.sessions import (
    SessionKey,
    SessionRegistry,
    SessionState,
    session_id_for,
    session_key,
)
from stream.settings import SessionScope


def _event(
    content: str = "hi",
    *,
    event_id: str = "e1",
    bot: str = "b",
    channel: str = "c",
    user: str = "u",
) -> ChatEvent:
    return ChatEvent(
        event_id=event_id,
        bot_id=bot,
        channel_id=channel,
        user_id=user,
        content=content,
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
    )


def _registry(max_sessions: int = 3, idle: float = 60.0, history: int = 5) -> SessionRegistry:
    return SessionRegistry(max_sessions=max_sessions, idle_timeout_s=idle, history_size=history)


def _never_busy(key: SessionKey) -> bool:
    return False


def _always_busy(key: SessionKey) -> bool:
    return True


# --- keys -------------------------------------------------------------------------------------


def test_session_key_by_scope() -> None:
    """User scope keys by (bot, channel, user); channel scope by (bot, channel)."""
    event = _event(bot="b1", channel="c1", user="u1")
    assert session_key(event, SessionScope.USER) == ("b1", "c1", "u1")
    assert session_key(event, SessionScope.CHANNEL) == ("b1", "c1")


def test_session_id_is_readable_and_quoted() -> None:
    """Parts are percent-quoted and joined with "/"."""
    assert session_id_for(("bot", "general", "alice")) == "bot/general/alice"
    assert session_id_for(("b/1", "c 2")) == "b%2F1/c%202"


@given(
    a=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=3),
    b=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=3),
)
def test_session_ids_are_unambiguous(a: list[str], b: list[str]) -> None:
    """Distinct keys never map to the same session id."""
    if tuple(a) != tuple(b):
        assert session_id_for(tuple(a)) != session_id_for(tuple(b))


# --- state ------------------------------------------------------------------------------------


def test_record_updates_history_counters_thread_and_emotion() -> None:
    """record appends the message and updates counters, thread, emotion and activity."""
    state = SessionState.new(("b", "c", "u"), now=1.0, history_size=5)
    state.record(_event("one", event_id="e1"), thread_id="t1", new_thread=True, emotion=0.5,
                 now=2.0)
    state.record(_event("two", event_id="e2"), thread_id=None, new_thread=False, emotion=None,
                 now=3.0)
    assert state.message_count == 2
    assert [m.content for m in state.recent_messages] == ["one", "two"]
    assert [m.thread_id for m in state.recent_messages] == ["t1", "t1"]
    assert state.current_thread_id == "t1"
    assert state.thread_count == 1
    assert list(state.emotion_trajectory) == [0.5]
    assert state.last_activity == 3.0
    assert state.created_at == 1.0


def test_history_and_emotion_are_bounded() -> None:
    """History keeps history_size messages and the emotion trajectory the last 20 values."""
    state = SessionState.new(("b", "c", "u"), now=0.0, history_size=3)
    for i in range(30):
        state.record(_event(f"m{i}", event_id=f"e{i}"), thread_id=None, new_thread=False,
                     emotion=float(i), now=float(i))
    assert [m.content for m in state.recent_messages] == ["m27", "m28", "m29"]
    assert len(state.emotion_trajectory) == 20
    assert state.emotion_trajectory[0] == 10.0
    assert state.message_count == 30


def test_snapshot_is_an_immutable_copy() -> None:
    """snapshot returns a frozen SessionSnapshot unaffected by later records."""
    state = SessionState.new(("b", "c", "u"), now=0.0, history_size=5)
    state.record(_event("one"), thread_id="t", new_thread=True, emotion=0.1, now=1.0)
    snap = state.snapshot()
    state.record(_event("two", event_id="e2"), thread_id=None, new_thread=False, emotion=0.2,
                 now=2.0)
    assert isinstance(snap, SessionSnapshot)
    assert snap.session_id == "b/c/u"
    assert snap.message_count == 1
    assert [m.content for m in snap.recent_messages] == ["one"]
    assert snap.emotion_trajectory == (0.1,)
    assert snap.current_thread_id == "t"
    assert snap.thread_count == 1
    assert snap.last_activity == datetime(2024, 1, 1, tzinfo=UTC)


def test_record_rejects_an_event_of_another_bot_or_channel() -> None:
    """Recording another bot's or channel's event into a session raises ValueError."""
    state = SessionState.new(("b", "c", "u"), now=0.0, history_size=5)
    with pytest.raises(ValueError):
        state.record(_event(bot="other"), thread_id=None, new_thread=False, emotion=None, now=1.0)
    with pytest.raises(ValueError):
        state.record(_event(channel="other"), thread_id=None, new_thread=False, emotion=None,
                     now=1.0)
    assert state.message_count == 0


# --- registry ---------------------------------------------------------------------------------


def test_constructor_validates_limits() -> None:
    """Non-positive limits are rejected."""
    with pytest.raises(ValueError):
        _registry(max_sessions=0)
    with pytest.raises(ValueError):
        _registry(idle=0)
    with pytest.raises(ValueError):
        _registry(history=0)


def test_get_or_create_returns_the_same_state_for_a_key() -> None:
    """A key maps to one state object until it is removed."""
    reg = _registry()
    first = reg.get_or_create(("b", "c", "u"), 0.0, _never_busy)
    assert first is not None
    assert reg.get_or_create(("b", "c", "u"), 1.0, _never_busy) is first
    assert reg.get(("b", "c", "u")) is first
    assert first.last_activity == 1.0
    assert len(reg) == 1
    assert ("b", "c", "u") in reg
    assert ("b", "c", "x") not in reg


def test_history_size_is_applied_to_new_sessions() -> None:
    """New sessions keep history_size messages."""
    reg = _registry(history=2)
    state = reg.get_or_create(("b", "c", "u"), 0.0, _never_busy)
    assert state is not None
    assert state.recent_messages.maxlen == 2


def test_full_registry_evicts_least_recently_seen_idle_session() -> None:
    """On a full registry, a new session evicts the least recently seen idle one."""
    reg = _registry(max_sessions=3)
    for i, key in enumerate([("b", "c", "1"), ("b", "c", "2"), ("b", "c", "3")]):
        reg.get_or_create(key, float(i), _never_busy)
    reg.touch(("b", "c", "1"), 10.0)
    assert reg.get_or_create(("b", "c", "4"), 11.0, _never_busy) is not None
    assert ("b", "c", "2") not in reg
    assert len(reg) == 3
    assert reg.evictions == 1


def test_busy_sessions_are_never_evicted() -> None:
    """Eviction skips busy sessions even if they are the least recently seen."""
    reg = _registry(max_sessions=2)
    reg.get_or_create(("b", "c", "busy"), 0.0, _never_busy)
    reg.get_or_create(("b", "c", "idle"), 1.0, _never_busy)

    def busy(key: SessionKey) -> bool:
        return key == ("b", "c", "busy")

    assert reg.get_or_create(("b", "c", "new"), 2.0, busy) is not None
    assert ("b", "c", "busy") in reg
    assert ("b", "c", "idle") not in reg


def test_full_registry_of_busy_sessions_returns_none() -> None:
    """When every session is busy, get_or_create returns None and changes nothing."""
    reg = _registry(max_sessions=2)
    a = reg.get_or_create(("b", "c", "1"), 0.0, _never_busy)
    reg.get_or_create(("b", "c", "2"), 0.0, _never_busy)
    assert reg.get_or_create(("b", "c", "3"), 1.0, _always_busy) is None
    assert len(reg) == 2
    assert ("b", "c", "3") not in reg
    # An existing session is still returned when full.
    assert reg.get_or_create(("b", "c", "1"), 1.0, _always_busy) is a


def test_touch_reports_missing_sessions() -> None:
    """touch returns False for an unknown key and True otherwise."""
    reg = _registry()
    assert reg.touch(("b", "c", "u"), 0.0) is False
    reg.get_or_create(("b", "c", "u"), 0.0, _never_busy)
    assert reg.touch(("b", "c", "u"), 1.0) is True


def test_expire_idle_removes_only_idle_not_busy_sessions() -> None:
    """expire_idle drops sessions idle past the timeout unless busy, and returns their keys."""
    reg = _registry(max_sessions=10, idle=10.0)
    reg.get_or_create(("b", "c", "old"), 0.0, _never_busy)
    reg.get_or_create(("b", "c", "old-busy"), 0.0, _never_busy)
    reg.get_or_create(("b", "c", "fresh"), 15.0, _never_busy)

    def busy(key: SessionKey) -> bool:
        return key == ("b", "c", "old-busy")

    assert reg.expire_idle(20.0, busy) == [("b", "c", "old")]
    assert set(reg.keys()) == {("b", "c", "old-busy"), ("b", "c", "fresh")}


def test_recent_record_protects_from_expiry() -> None:
    """A session that recorded a message recently is not expired, even if seen long ago."""
    reg = _registry(max_sessions=10, idle=10.0)
    state = reg.get_or_create(("b", "c", "u"), 0.0, _never_busy)
    assert state is not None
    state.record(_event(), thread_id=None, new_thread=False, emotion=None, now=18.0)
    assert reg.expire_idle(20.0, _never_busy) == []
    assert reg.expire_idle(29.0, _never_busy) == [("b", "c", "u")]


def test_expiry_at_exactly_the_timeout_keeps_the_session() -> None:
    """Idle for exactly idle_timeout_s is not yet expired."""
    reg = _registry(idle=10.0)
    reg.get_or_create(("b", "c", "u"), 0.0, _never_busy)
    assert reg.expire_idle(10.0, _never_busy) == []


def test_release_drops_matching_sessions() -> None:
    """release removes the sessions whose key matches and returns their keys."""
    reg = _registry(max_sessions=10)
    for channel in ("c1", "c2", "c1"):
        reg.get_or_create(("b", channel, f"u-{channel}-{len(reg)}"), 0.0, _never_busy)
    released = reg.release(lambda key: key[1] == "c1")
    assert sorted(released) == [("b", "c1", "u-c1-0"), ("b", "c1", "u-c1-2")]
    assert len(reg) == 1
    assert reg.channels() == {("b", "c2"): 1}


def test_channels_and_utilization() -> None:
    """channels counts live sessions per (bot, channel); utilization is len / max."""
    reg = _registry(max_sessions=4)
    reg.get_or_create(("b1", "c", "u1"), 0.0, _never_busy)
    reg.get_or_create(("b1", "c", "u2"), 0.0, _never_busy)
    reg.get_or_create(("b2", "c", "u1"), 0.0, _never_busy)
    assert reg.channels() == {("b1", "c"): 2, ("b2", "c"): 1}
    assert reg.utilization == 0.75
    assert reg.max_sessions == 4


def test_channel_scope_sessions_work() -> None:
    """Two-part (channel scope) keys are supported."""
    reg = _registry()
    state = reg.get_or_create(("b", "c"), 0.0, _never_busy)
    assert state is not None
    assert (state.bot_id, state.channel_id, state.session_id) == ("b", "c", "b/c")


def test_distinct_keys_never_share_state_or_history() -> None:
    """Sessions of different users or bots have separate state and history objects."""
    reg = _registry(max_sessions=10)
    keys = [("b1", "c", "u1"), ("b1", "c", "u2"), ("b2", "c", "u1")]
    states = [reg.get_or_create(key, 0.0, _never_busy) for key in keys]
    assert all(s is not None for s in states)
    assert len({id(s) for s in states}) == 3
    assert len({id(s.recent_messages) for s in states if s}) == 3
    assert len({id(s.emotion_trajectory) for s in states if s}) == 3
    first = states[0]
    assert first is not None
    first.record(_event(bot="b1", user="u1"), thread_id="t", new_thread=True, emotion=0.9,
                 now=1.0)
    for other in states[1:]:
        assert other is not None
        assert other.message_count == 0
        assert not other.recent_messages
        assert not other.emotion_trajectory
        assert other.current_thread_id is None


def test_recreated_session_starts_empty() -> None:
    """After eviction or expiry, a session with the same key starts with no history."""
    reg = _registry(max_sessions=1, idle=10.0)
    state = reg.get_or_create(("b", "c", "u"), 0.0, _never_busy)
    assert state is not None
    state.record(_event(), thread_id=None, new_thread=False, emotion=None, now=0.0)
    reg.expire_idle(100.0, _never_busy)
    again = reg.get_or_create(("b", "c", "u"), 100.0, _never_busy)
    assert again is not None and again is not state
    assert again.message_count == 0


def _same_channel_and_idle(key: SessionKey, busy: set[SessionKey]) -> Callable[[SessionKey], bool]:
    return lambda other: other[:2] == key[:2] and other not in busy


_keys = st.tuples(st.sampled_from(["b1", "b2"]), st.sampled_from(["c1", "c2"]),
                  st.sampled_from(["u1", "u2", "u3", "u4"]))
_ops = st.one_of(
    st.tuples(st.just("get"), _keys, st.booleans()),
    st.tuples(st.just("touch"), _keys, st.booleans()),
    st.tuples(st.just("expire"), _keys, st.booleans()),
    st.tuples(st.just("release"), _keys, st.booleans()),
)


@given(max_sessions=st.integers(1, 6), ops=st.lists(_ops, max_size=80), data=st.data())
@settings(deadline=None)
def test_bound_and_busy_protection_hold_under_random_operations(
    max_sessions: int, ops: list[tuple[str, SessionKey, bool]], data: st.DataObject
) -> None:
    """Random operations never exceed max_sessions, never evict or expire a busy session, and
    only return None when every session is busy."""
    reg = _registry(max_sessions=max_sessions, idle=5.0)
    busy: set[SessionKey] = set()
    now = 0.0
    for op, key, flag in ops:
        now += data.draw(st.sampled_from([0.0, 1.0, 3.0]))
        before = set(reg.keys())
        if op == "get":
            state = reg.get_or_create(key, now, busy.__contains__)
            if state is None:
                assert len(reg) == max_sessions and all(k in busy for k in before)
                assert key not in reg
            else:
                assert state.key == key
                if flag:
                    busy.add(key)
        elif op == "touch":
            reg.touch(key, now)
            if not flag:
                busy.discard(key)
        elif op == "expire":
            for expired in reg.expire_idle(now, busy.__contains__):
                assert expired not in busy
        else:
            reg.release(_same_channel_and_idle(key, busy))
        assert len(reg) <= max_sessions
        for k in before & busy:
            assert k in reg, "a busy session disappeared"
        assert sum(reg.channels().values()) == len(reg)
        assert reg.utilization <= 1.0
