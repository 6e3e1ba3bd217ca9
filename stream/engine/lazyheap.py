"""Lazy deletion for heaps whose members move: one helper for the scheduler and the waiting line.

A member (a lane, a waiting session) has at most one *live* entry: the one whose ``token``
equals the member's current ``token``. Moving a member pushes a new entry with a new token,
which leaves the old one *stale*; stale entries are dropped when they surface at the top
(``live_head``) and all at once when they outnumber live ones (``compact``), so a heap stays
O(members) in size and every push and pop stays O(log n) amortised.
"""

from __future__ import annotations

import heapq
from typing import Any, Protocol, TypeVar

__all__ = ["Entry", "compact", "live_head"]


class Entry(Protocol):
    """A heap entry: its sort fields come first, then ``token`` (unique, so comparisons never
    reach the member) and ``owner`` (the member, which carries its live ``token``)."""

    @property
    def token(self) -> int: ...
    @property
    def owner(self) -> Any: ...

    def __lt__(self, other: Any, /) -> bool: ...


E = TypeVar("E", bound=Entry)


def live_head(heap: list[E]) -> E | None:
    """The top live entry (stale ones above it are popped), or None when none is left."""
    while heap:
        entry = heap[0]
        if entry.owner.token == entry.token:
            return entry
        heapq.heappop(heap)
    return None


def compact(heap: list[E], live: int) -> None:
    """Drop every stale entry once the heap holds more than twice ``live`` (plus a margin)."""
    if len(heap) <= 2 * live + 64:
        return
    heap[:] = [entry for entry in heap if entry.owner.token == entry.token]
    heapq.heapify(heap)
