"""The line of sessions waiting for a session slot, served by priority.

When the session registry is full of busy sessions, new conversations have to wait until a slot
frees. A plain FIFO of events makes a critical event of a new conversation wait behind every
normal one that arrived before it. This line hands the next free slot to the *session* whose most
urgent waiting event is the most urgent overall, and gives it all of that session's waiting
events at once, in arrival order, so a conversation's events are never reordered: the later,
more urgent event of a session lifts the whole session (priority inheritance) instead of
overtaking the session's earlier events.

Rules, in the order they decide:

1. Lowest best rank first: a session's rank is that of its most urgent waiting item.
2. Among equal ranks, the session whose earliest waiting item arrived first (FIFO).

There is no aging: under a sustained stream of urgent new sessions a low-priority one waits.
Backpressure bounds how much can wait, and the scheduler ages work once it holds a slot.

Sessions sit in one heap keyed by (best rank, first arrival). A push that improves a session's
rank pushes a new entry and leaves the old one stale; stale entries are dropped when they reach
the top (lazy deletion) and the heap is rebuilt when they outnumber live ones, so ``push`` and
``pop_session`` are O(log n) amortised. ``remove`` looks at every item anyway and rebuilds.

Pure and synchronous, no asyncio or Kafka, so it is tested as plain logic.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from schemas.events import Priority
from stream.engine.lazyheap import compact, live_head

__all__ = ["WaitingLine"]

K = TypeVar("K", bound=Hashable)  # a session key
T = TypeVar("T")

_LEVELS = tuple(Priority)  # ordered most urgent first: index == Priority.rank


class _Waiting(NamedTuple, Generic[T]):
    seq: int  # arrival order, across sessions, so remove() can return items in arrival order
    priority: Priority
    item: T


@dataclass(eq=False, slots=True)
class _Session(Generic[K, T]):
    key: K
    items: deque[_Waiting[T]] = field(default_factory=deque)
    rank: int = len(_LEVELS)  # best rank among items; the rank of the live heap entry
    token: int = -1  # token of the session's one live heap entry; -1 once it left the line


class _Entry(NamedTuple):
    rank: int
    first_seq: int
    token: int  # unique, so comparisons never reach the session (keys need not be orderable)
    owner: _Session  # type: ignore[type-arg]


class WaitingLine(Generic[K, T]):
    """Sessions waiting for a slot, most urgent first, each keeping its items in arrival order.

    Not thread-safe: call it from one thread (the event loop).
    """

    __slots__ = ("_depth", "_heap", "_seq", "_sessions")

    def __init__(self) -> None:
        self._sessions: dict[K, _Session[K, T]] = {}
        self._heap: list[_Entry] = []
        self._depth = [0] * len(_LEVELS)
        # One counter for arrivals and heap tokens: both only need to be unique and increasing.
        self._seq = itertools.count()

    def push(self, session_key: K, priority: Priority, item: T) -> None:
        """Append ``item`` to the session's waiting items. Never blocks, never drops."""
        session = self._sessions.get(session_key)
        if session is None:
            session = self._sessions[session_key] = _Session(session_key)
        session.items.append(_Waiting(next(self._seq), priority, item))
        self._depth[priority.rank] += 1
        if priority.rank < session.rank:
            # New sessions land here too (their rank starts past the last level). An improved
            # session keeps its first arrival: urgency lifts it, it does not lose its place.
            fresh = session.token < 0
            self._enqueue(session, priority.rank)
            if not fresh:
                self._compact()

    def peek_session(self) -> K | None:
        """The key ``pop_session`` would return, or None when nothing waits.

        Lets the caller ask for a slot first and pop only once the slot was granted.
        """
        entry = self._live_head()
        return None if entry is None else entry.owner.key

    def pop_session(self) -> tuple[K, list[T]] | None:
        """Remove the session that should get the next free slot; return its key and all its
        waiting items in arrival order, or None when nothing waits."""
        entry = self._live_head()
        if entry is None:
            return None
        heapq.heappop(self._heap)
        session = entry.owner
        session.token = -1
        del self._sessions[session.key]
        for waiting in session.items:
            self._depth[waiting.priority.rank] -= 1
        self._compact()
        return session.key, [waiting.item for waiting in session.items]

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove every waiting item matching ``predicate``; return them in arrival order.

        Sessions left empty leave the line; the others keep their place, re-ranked by what is
        left. O(waiting items): used on partition revocation and at stop, not per event.
        """
        # Decide everything before changing anything, so a raising predicate loses no item.
        plan: list[tuple[_Session[K, T], deque[_Waiting[T]]]] = []
        removed: list[_Waiting[T]] = []
        for session in self._sessions.values():
            kept: deque[_Waiting[T]] = deque()
            for waiting in session.items:
                (removed if predicate(waiting.item) else kept).append(waiting)
            if len(kept) != len(session.items):
                plan.append((session, kept))
        if not plan:
            return []
        for waiting in removed:
            self._depth[waiting.priority.rank] -= 1
        for session, kept in plan:
            session.items = kept
            if not kept:
                session.token = -1
                del self._sessions[session.key]
        # The best rank and first arrival of a touched session may both have changed (even
        # got worse, which an extra entry cannot express): rebuild from the sessions left.
        self._heap = []
        for session in self._sessions.values():
            session.token = next(self._seq)
            session.rank = min(waiting.priority.rank for waiting in session.items)
            self._heap.append(_Entry(session.rank, session.items[0].seq, session.token, session))
        heapq.heapify(self._heap)
        removed.sort(key=lambda waiting: waiting.seq)
        return [waiting.item for waiting in removed]

    # --- introspection ----------------------------------------------------------------------

    def __len__(self) -> int:
        """Waiting items (not sessions)."""
        return sum(self._depth)

    def __bool__(self) -> bool:
        return bool(self._sessions)

    def __contains__(self, session_key: object) -> bool:
        """True when the session has waiting items."""
        return session_key in self._sessions

    @property
    def sessions(self) -> int:
        """Waiting sessions."""
        return len(self._sessions)

    def items(self) -> Iterator[T]:
        """Every waiting item, in no particular order; a snapshot, safe to hold while mutating."""
        return iter([waiting.item for session in self._sessions.values() for waiting in session.items])

    def depth_by_priority(self) -> dict[Priority, int]:
        """Waiting items by their own priority (not their session's inherited one)."""
        return {priority: self._depth[priority.rank] for priority in _LEVELS}

    # --- internals --------------------------------------------------------------------------

    def _enqueue(self, session: _Session[K, T], rank: int) -> None:
        session.rank = rank
        session.token = next(self._seq)
        heapq.heappush(self._heap, _Entry(rank, session.items[0].seq, session.token, session))

    def _live_head(self) -> _Entry | None:
        return live_head(self._heap)

    def _compact(self) -> None:
        # Entries of popped sessions superseded by a rank improvement linger until they surface,
        # which under a stream of urgent sessions may be never.
        compact(self._heap, live=len(self._sessions))
