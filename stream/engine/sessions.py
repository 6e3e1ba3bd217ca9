"""The session registry: one state object per conversation, bounded and expiring.

A session is keyed by (bot_id, channel_id, user_id), or (bot_id, channel_id) with the channel
scope. Each key owns a distinct ``SessionState``, so nothing of one session (history, threads,
emotion trajectory) is reachable from another, and keys of different bots never collide.

The registry holds at most ``max_sessions`` states. A new session on a full registry evicts
the least recently seen session that is not busy (no work queued or in flight); when every
session is busy, ``get_or_create`` returns None and the caller waits (backpressure) rather than
dropping anything. Pure and synchronous; time is passed in as ``now`` (monotonic seconds).
"""

from __future__ import annotations

import functools
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from schemas.context import HistoryMessage, SessionSnapshot
from schemas.events import ChatEvent
from stream.settings import SessionScope

__all__ = [
    "SessionKey",
    "SessionRegistry",
    "SessionState",
    "session_id_for",
    "session_key",
]

SessionKey = tuple[str, ...]
IsBusy = Callable[[SessionKey], bool]

EMOTION_TRAJECTORY_SIZE = 20


def session_key(event: ChatEvent, scope: SessionScope) -> SessionKey:
    """The session ``event`` belongs to under ``scope``."""
    if scope is SessionScope.CHANNEL:
        return (event.bot_id, event.channel_id)
    return (event.bot_id, event.channel_id, event.user_id)


@functools.lru_cache(maxsize=16_384)  # a conversation's events repeat its key: quote it once
def session_id_for(key: SessionKey) -> str:
    """A readable, unambiguous id: each part percent-quoted (so "/" cannot occur inside a
    part), joined with "/". Distinct keys always give distinct ids."""
    return "/".join(quote(part, safe="") for part in key)


@dataclass(eq=False, slots=True)
class SessionState:
    """Mutable state of one session. Only the session's own events may be recorded into it.

    ``created_at`` and ``last_activity`` are monotonic seconds; ``last_message_at`` is the
    wall-clock timestamp of the last recorded event, reported in snapshots.
    """

    key: SessionKey
    session_id: str
    bot_id: str
    channel_id: str
    created_at: float
    last_activity: float
    message_count: int = 0
    recent_messages: deque[HistoryMessage] = field(default_factory=deque)
    current_thread_id: str | None = None
    thread_count: int = 0
    emotion_trajectory: deque[float] = field(
        default_factory=lambda: deque(maxlen=EMOTION_TRAJECTORY_SIZE)
    )
    last_message_at: datetime | None = None
    partition: Hashable | None = None  # where its events come from; released on revocation
    # Which life of its key the session's changelog records belong to (session_documents).
    changelog_incarnation: str | None = None
    # The window slots its key held in the changelog when it was restored: after the window
    # shrank, those past the new size are never written again, and its end tombstones them too.
    changelog_slots: frozenset[int] = frozenset()

    @classmethod
    def new(cls, key: SessionKey, now: float, history_size: int) -> SessionState:
        """An empty session for ``key`` keeping the last ``history_size`` messages."""
        return cls(
            key=key,
            session_id=session_id_for(key),
            bot_id=key[0],
            channel_id=key[1],
            created_at=now,
            last_activity=now,
            recent_messages=deque(maxlen=history_size),
        )

    def snapshot(self) -> SessionSnapshot:
        """An immutable copy for processors (safe to send to a worker process)."""
        return SessionSnapshot(
            session_id=self.session_id,
            message_count=self.message_count,
            recent_messages=tuple(self.recent_messages),
            current_thread_id=self.current_thread_id,
            thread_count=self.thread_count,
            last_activity=self.last_message_at,
            emotion_trajectory=tuple(self.emotion_trajectory),
        )

    def record(
        self,
        event: ChatEvent,
        *,
        thread_id: str | None,
        new_thread: bool,
        emotion: float | None,
        now: float,
    ) -> None:
        """Append ``event`` to the history and update counters, thread and emotion.

        ``thread_id`` None keeps the current thread; ``new_thread`` counts one more thread.
        Raises ValueError if ``event`` belongs to another bot or channel (isolation guard).
        """
        if event.bot_id != self.bot_id or event.channel_id != self.channel_id:
            raise ValueError(f"event {event.event_id} does not belong to {self.session_id}")
        if thread_id is not None:
            self.current_thread_id = thread_id
        if new_thread:
            self.thread_count += 1
        self.recent_messages.append(
            HistoryMessage(
                event_id=event.event_id,
                content=event.content,
                timestamp=event.timestamp,
                thread_id=self.current_thread_id,
            )
        )
        if emotion is not None:
            self.emotion_trajectory.append(emotion)
        self.message_count += 1
        self.last_activity = max(self.last_activity, now)
        self.last_message_at = event.timestamp


class SessionRegistry:
    """Bounded map of session key -> ``SessionState`` with LRU eviction and idle expiry.

    Recency: the registry orders sessions by when it last saw them (``get_or_create`` or
    ``touch``); eviction takes the front-most session that is not busy, so it only walks past
    busy ones. Expiry uses ``SessionState.last_activity``, which ``record`` also advances, so
    a session that just recorded a message is never expired.
    """

    __slots__ = ("_channels", "_evictions", "_history", "_idle", "_max", "_seen", "_states",
                 "on_dropped")

    def __init__(self, *, max_sessions: int, idle_timeout_s: float, history_size: int) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if idle_timeout_s <= 0:
            raise ValueError("idle_timeout_s must be positive")
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        self._max = max_sessions
        self._idle = idle_timeout_s
        self._history = history_size
        self._states: dict[SessionKey, SessionState] = {}
        self._seen: OrderedDict[SessionKey, float] = OrderedDict()  # least recently seen first
        self._channels: Counter[tuple[str, str]] = Counter()
        self._evictions = 0
        # Told of each session that ends for good (expired or evicted, not released): the
        # changelog writes its tombstone.
        self.on_dropped: Callable[[SessionState], None] | None = None

    def get_or_create(self, key: SessionKey, now: float, is_busy: IsBusy) -> SessionState | None:
        """The session for ``key``, created if needed, and marked as seen at ``now``.

        On a full registry a new session evicts the least recently seen session that is not
        busy; if every session is busy, returns None and changes nothing: the caller waits.
        """
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self._max and not self._evict_one(is_busy):
                return None
            state = SessionState.new(key, now, self._history)
            self._states[key] = state
            self._channels[(state.bot_id, state.channel_id)] += 1
        self._mark_seen(state, now)
        return state

    def restore(self, state: SessionState, now: float) -> bool:
        """Install a session restored from the changelog into a free slot, unless one with its
        key is already live (the live one is newer); False when it was not installed. It never
        evicts: ending a session for good tombstones its changelog state, and a restore must
        not cost the member's other conversations theirs (nor one it installed itself)."""
        if state.key in self._states or len(self._states) >= self._max:
            return False
        self._states[state.key] = state
        self._channels[(state.bot_id, state.channel_id)] += 1
        self._mark_seen(state, now)
        return True

    def get(self, key: SessionKey) -> SessionState | None:
        """The session for ``key`` if it exists; does not count as activity."""
        return self._states.get(key)

    def touch(self, key: SessionKey, now: float) -> bool:
        """Mark ``key`` as seen at ``now``; False if there is no such session."""
        state = self._states.get(key)
        if state is None:
            return False
        self._mark_seen(state, now)
        return True

    def expire_idle(self, now: float, is_busy: IsBusy) -> list[SessionKey]:
        """Remove sessions idle for more than ``idle_timeout_s`` and not busy; return their keys.

        Walks from the least recently seen and stops at the first one seen within the timeout,
        so a call costs O(expired + busy or recently recorded sessions walked past).
        """
        cutoff = now - self._idle
        expired: list[SessionKey] = []
        for key, seen in self._seen.items():
            if seen >= cutoff:
                break
            if self._states[key].last_activity < cutoff and not is_busy(key):
                expired.append(key)
        for key in expired:
            self._dropped(self._remove(key))
        return expired

    def release(self, predicate: Callable[[SessionKey], bool]) -> list[SessionKey]:
        """Remove every session whose key matches ``predicate`` (e.g. of revoked partitions).

        O(sessions): meant for rebalances. The caller decides whether busy sessions match.
        """
        released = [key for key in self._seen if predicate(key)]
        for key in released:
            self._remove(key)
        return released

    @property
    def max_sessions(self) -> int:
        """The bound on live sessions."""
        return self._max

    @property
    def utilization(self) -> float:
        """Live sessions as a fraction of ``max_sessions`` (1.0 = full: new sessions wait)."""
        return len(self._states) / self._max

    @property
    def evictions(self) -> int:
        """Sessions evicted to make room since start.

        A steadily rising count means live conversations lose their history: raise
        MAX_CONCURRENT_SESSIONS.
        """
        return self._evictions

    def channels(self) -> Counter[tuple[str, str]]:
        """Live sessions per (bot_id, channel_id); a copy."""
        return Counter(self._channels)

    def keys(self) -> Iterator[SessionKey]:
        """Live session keys, least recently seen first."""
        return iter(tuple(self._seen))

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: object) -> bool:
        return key in self._states

    def _mark_seen(self, state: SessionState, now: float) -> None:
        state.last_activity = max(state.last_activity, now)
        self._seen[state.key] = now
        self._seen.move_to_end(state.key)

    def _evict_one(self, is_busy: IsBusy) -> bool:
        victim = next((key for key in self._seen if not is_busy(key)), None)
        if victim is None:
            return False
        self._dropped(self._remove(victim))
        self._evictions += 1
        return True

    def _dropped(self, state: SessionState) -> None:
        if self.on_dropped is not None:
            self.on_dropped(state)

    def _remove(self, key: SessionKey) -> SessionState:
        state = self._states.pop(key)
        del self._seen[key]
        channel = (state.bot_id, state.channel_id)
        self._channels[channel] -= 1
        if not self._channels[channel]:
            del self._channels[channel]
        return state
