"""Ordered concurrency with priorities: which event runs next.

Each session has a FIFO lane; a lane is *ready* when it has queued items and nothing in flight.
Rules, in the order they decide:

1. At most one item per session in flight, so a session's items finish in push order.
2. At most ``max_in_flight`` items in flight overall; ``pop_ready`` returns None beyond it.
3. A ready lane's level is the highest priority of any item queued in it (priority
   inheritance): a critical message is not stuck behind its own session's low-priority head.
4. Aging: a lane ready for ``aging_seconds * k`` counts as ``k`` levels more urgent, capped at
   high, so low-priority work is served even under a sustained stream of high and normal work
   (a low lane reaches high after ``2 * aging_seconds``), while critical work is never
   overtaken by work that merely waited.
5. Among ready lanes: most urgent effective level first, then earliest ready time (FIFO).
6. A lane holding a critical item keeps its place as it drains: when one of its items
   completes, it is ready again since its first critical item arrived, not since now, so the
   items ahead of that one run back to back instead of queueing again behind every other
   critical lane each time.

Ready lanes sit in one heap per level, keyed by (ready time, ready sequence). Within a level
the heap head is the oldest lane, hence also the most aged, so the next lane is the best of at
most four heads. A lane that changes level is pushed again and its old entry goes stale; stale
entries are dropped when they surface (lazy deletion). Every operation is O(log n) except
``remove_queued``, which has to look at every lane anyway.

Pure and synchronous; time is passed in as ``now`` (monotonic seconds).
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

__all__ = ["PriorityScheduler"]

T = TypeVar("T")

_LEVELS = tuple(Priority)  # ordered most urgent first: index == Priority.rank
_CRITICAL, _HIGH = Priority.CRITICAL.rank, Priority.HIGH.rank


class _Queued(NamedTuple, Generic[T]):
    seq: int  # global push order, so remove_queued returns items in push order
    priority: Priority
    item: T
    at: float  # when it was pushed


@dataclass(eq=False, slots=True)
class _Lane(Generic[T]):
    key: Hashable
    items: deque[_Queued[T]] = field(default_factory=deque)
    by_rank: list[int] = field(default_factory=lambda: [0] * len(_LEVELS))
    in_flight: bool = False
    ready_since: float = 0.0
    ready_seq: int = 0
    token: int = -1  # token of the lane's one live heap entry; -1 when not in a heap
    entry_rank: int = -1  # level of that entry

    def level(self) -> int:
        """Rank of the most urgent queued item (the lane must not be empty)."""
        for rank, count in enumerate(self.by_rank):
            if count:
                return rank
        raise ValueError("an empty lane has no level")


class _Entry(NamedTuple):
    ready_since: float
    ready_seq: int
    token: int  # unique, so comparisons never reach the lane
    owner: _Lane  # type: ignore[type-arg]


class PriorityScheduler(Generic[T]):
    """Per-session FIFO lanes, served by priority with aging; see the module docstring.

    Not thread-safe: call it from one thread (the event loop).
    """

    def __init__(self, *, max_in_flight: int, aging_seconds: float) -> None:
        if aging_seconds <= 0:
            raise ValueError("aging_seconds must be positive")
        self._aging = aging_seconds
        self._max_in_flight = _checked_max(max_in_flight)
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self._heaps: list[list[_Entry]] = [[] for _ in _LEVELS]
        self._ready = 0  # lanes with a live heap entry
        self._in_flight = 0
        self._depth = [0] * len(_LEVELS)
        self._seq = itertools.count()

    # --- the calls of the hot path ---------------------------------------------------------

    def push(self, session_key: Hashable, priority: Priority, item: T, now: float) -> None:
        """Queue ``item`` at the end of the session's lane. Never blocks, never drops.

        Bounding the total is the caller's job (``queued`` tells how much waits).
        """
        lane = self._lanes.get(session_key)
        if lane is None:
            lane = self._lanes[session_key] = _Lane(session_key)
        lane.items.append(_Queued(next(self._seq), priority, item, now))
        lane.by_rank[priority.rank] += 1
        self._depth[priority.rank] += 1
        if lane.in_flight:
            return
        if lane.token < 0:
            lane.ready_since = now
            lane.ready_seq = next(self._seq)
            self._enqueue(lane, priority.rank)
        elif priority.rank < lane.entry_rank:
            self._enqueue(lane, priority.rank)  # inherit: re-queue higher, same ready time
            self._compact()

    def start_now(self, session_key: Hashable) -> bool:
        """Mark the session in flight for an item that was never queued, if ``push`` followed
        by ``pop_ready`` would run that very item now: the session is idle, no other lane is
        ready and ``max_in_flight`` is not reached. False (nothing changed) otherwise; the
        caller then pushes the item as usual. Spares the heaps the common case of an idle
        scheduler."""
        if self._ready or self._in_flight >= self._max_in_flight or session_key in self._lanes:
            return False
        lane = self._lanes[session_key] = _Lane(session_key)
        lane.in_flight = True
        self._in_flight += 1
        return True

    def pop_ready(self, now: float) -> tuple[Hashable, T] | None:
        """Take the next item to run and mark its session in flight.

        Returns None when nothing is runnable: nothing queued, every session with queued
        items already has one in flight, or ``max_in_flight`` items are in flight.
        """
        if not self._ready or self._in_flight >= self._max_in_flight:
            return None
        best: tuple[int, float, int, int] | None = None
        for rank, heap in enumerate(self._heaps):
            entry = live_head(heap) if heap else None
            if entry is None:
                continue
            candidate = (self._effective(rank, entry.ready_since, now), *entry[:2], rank)
            if best is None or candidate < best:
                best = candidate
        if best is None:
            return None
        lane = heapq.heappop(self._heaps[best[3]]).owner
        lane.token = -1
        self._ready -= 1
        queued = lane.items.popleft()
        lane.by_rank[queued.priority.rank] -= 1
        self._depth[queued.priority.rank] -= 1
        lane.in_flight = True
        self._in_flight += 1
        return lane.key, queued.item

    def complete(self, session_key: Hashable, now: float) -> None:
        """The session's in-flight item finished; its lane becomes ready again at ``now``
        (or, holding a critical item, since that item arrived: rule 6).

        Raises ValueError when the session has nothing in flight (a caller bug).
        """
        lane = self._lanes.get(session_key)
        if lane is None or not lane.in_flight:
            raise ValueError(f"session {session_key!r} has nothing in flight")
        lane.in_flight = False
        self._in_flight -= 1
        if not lane.items:
            del self._lanes[session_key]
            return
        level = lane.level()
        if level == _CRITICAL:  # rule 6
            first = next(q for q in lane.items if q.priority.rank == _CRITICAL)
            lane.ready_since, lane.ready_seq = first.at, first.seq
        else:
            lane.ready_since = now
            lane.ready_seq = next(self._seq)
        self._enqueue(lane, level)

    # --- rebalance --------------------------------------------------------------------------

    def remove_queued(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove every queued (not in-flight) item matching ``predicate``; return them in
        push order. In-flight items are untouched: the caller finishes or abandons them.

        O(queued items): used on partition revocation, not per event.
        """
        # Decide everything before changing anything, so a raising predicate loses no item.
        plan: list[tuple[_Lane[T], deque[_Queued[T]]]] = []
        removed: list[_Queued[T]] = []
        for lane in self._lanes.values():
            kept: deque[_Queued[T]] = deque()
            for queued in lane.items:
                (removed if predicate(queued.item) else kept).append(queued)
            if len(kept) != len(lane.items):
                plan.append((lane, kept))
        for queued in removed:
            self._depth[queued.priority.rank] -= 1
        for lane, kept in plan:
            self._replace_items(lane, kept)
        self._compact()
        removed.sort(key=lambda queued: queued.seq)
        return [queued.item for queued in removed]

    # --- introspection ----------------------------------------------------------------------

    @property
    def max_in_flight(self) -> int:
        """Limit on items in flight; lowering it lets running items finish, it cancels none."""
        return self._max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        self._max_in_flight = _checked_max(value)

    @property
    def queued(self) -> int:
        """Items waiting (not in flight)."""
        return sum(self._depth)

    @property
    def in_flight(self) -> int:
        """Items popped and not yet completed."""
        return self._in_flight

    @property
    def session_count(self) -> int:
        """Lanes that exist: sessions with queued items or an item in flight."""
        return len(self._lanes)

    def depth_by_priority(self) -> dict[Priority, int]:
        """Queued items by their own priority (not the lane's inherited one)."""
        return {priority: self._depth[priority.rank] for priority in _LEVELS}

    def is_idle(self, session_key: Hashable) -> bool:
        """True when the session has nothing queued and nothing in flight."""
        return session_key not in self._lanes

    def sessions(self) -> Iterator[Hashable]:
        """Keys of the existing lanes."""
        return iter(tuple(self._lanes))

    # --- internals --------------------------------------------------------------------------

    def _replace_items(self, lane: _Lane[T], kept: deque[_Queued[T]]) -> None:
        lane.items = kept
        lane.by_rank = [0] * len(_LEVELS)
        for queued in kept:
            lane.by_rank[queued.priority.rank] += 1
        if not kept:
            if lane.token >= 0:
                lane.token = -1
                self._ready -= 1
            if not lane.in_flight:
                del self._lanes[lane.key]
        elif lane.token >= 0 and lane.level() != lane.entry_rank:
            self._enqueue(lane, lane.level())

    def _effective(self, rank: int, ready_since: float, now: float) -> int:
        if rank == _CRITICAL:
            return rank
        waited = max(0.0, now - ready_since)
        return max(_HIGH, rank - int(waited // self._aging))

    def _enqueue(self, lane: _Lane[T], rank: int) -> None:
        if lane.token < 0:
            self._ready += 1
        lane.token = next(self._seq)
        lane.entry_rank = rank
        entry = _Entry(lane.ready_since, lane.ready_seq, lane.token, lane)
        heapq.heappush(self._heaps[rank], entry)

    def _compact(self) -> None:
        # The per-level heaps share one count of live entries: compact each against it.
        if sum(map(len, self._heaps)) > 2 * self._ready + 64:
            for heap in self._heaps:
                compact(heap, live=0)


def _checked_max(value: int) -> int:
    if value < 1:
        raise ValueError("max_in_flight must be at least 1")
    return value
