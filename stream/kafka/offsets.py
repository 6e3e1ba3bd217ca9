"""At-least-once commit watermarks, per partition.

Events of one partition finish out of order (sessions run side by side), but Kafka stores one
committed offset per partition: "everything below this is done". So each partition keeps the
offsets it has handed out, and the offset to commit is the lowest one not yet completed. An
offset is completed only after the broker acknowledged its responses, which gives invariant 2
of the architecture: nothing at or after a pending offset is ever committed.

Pure bookkeeping: no Kafka, no clock. The consumer calls ``track`` when it takes a record,
``complete`` when the record's responses are acknowledged, and commits ``commit_points()``
every commit interval, then reports the result with ``mark_committed``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets"]

P = TypeVar("P", bound=Hashable)


class PartitionOffsets:
    """Tracked and completed offsets of one partition.

    Every operation is amortised O(1): ``_order`` holds tracked offsets in increasing order and
    is trimmed from the left as soon as its head is completed, ``_pending`` answers membership.
    Memory is bounded by the span between the oldest pending offset and the newest tracked one,
    which the consumer bounds with its in-flight and buffer limits.
    """

    __slots__ = ("_highest", "_order", "_pending")

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._pending: set[int] = set()
        self._highest: int | None = None

    def track(self, offset: int) -> None:
        """Start tracking ``offset``, handed to processing and not yet complete.

        Offsets normally arrive increasing, possibly with gaps (compaction, transaction
        markers). Re-tracking a pending offset is a no-op. Any other offset at or below the
        highest tracked one means the consumer seeked back: the partition's state is reset and
        tracking starts again from ``offset``.
        """
        if offset in self._pending:
            return
        if self._highest is not None and offset <= self._highest:
            self.reset()
        self._order.append(offset)
        self._pending.add(offset)
        self._highest = offset

    def complete(self, offset: int) -> None:
        """Mark ``offset`` done; an offset that is not pending (unknown, done, reset) is ignored."""
        if offset not in self._pending:
            return
        self._pending.discard(offset)
        order = self._order
        while order and order[0] not in self._pending:
            order.popleft()

    def committable(self) -> int | None:
        """The offset to commit, in Kafka terms: the next offset to read after a restart.

        That is the lowest pending offset, or the highest tracked offset + 1 when none is
        pending; None while nothing has been tracked (there is nothing to commit).
        """
        if self._order:
            return self._order[0]
        return None if self._highest is None else self._highest + 1

    def reset(self) -> None:
        """Forget everything, as after a seek."""
        self._order.clear()
        self._pending.clear()
        self._highest = None

    @property
    def pending(self) -> int:
        """How many tracked offsets are not complete yet."""
        return len(self._pending)

    def __repr__(self) -> str:
        return (
            f"PartitionOffsets(pending={self.pending}, committable={self.committable()}, "
            f"highest={self._highest})"
        )


class OffsetTracker(Generic[P]):
    """Watermarks of every assigned partition, keyed by any hashable (e.g. ``TopicPartition``).

    ``commit_points`` only names partitions whose watermark moved past what was last committed,
    so an idle partition costs no commit request. A watermark that falls below the committed
    one (after a seek back) is not reported until it passes it again: the committed offset
    never moves backwards, so a seek re-processes records rather than forgetting commits.
    """

    __slots__ = ("_committed", "_partitions")

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}
        self._committed: dict[P, int] = {}

    def track(self, tp: P, offset: int) -> None:
        """Track ``offset`` of ``tp`` (see ``PartitionOffsets.track``)."""
        part = self._partitions.get(tp)
        if part is None:
            part = self._partitions[tp] = PartitionOffsets()
        part.track(offset)

    def complete(self, tp: P, offset: int) -> None:
        """Mark ``offset`` of ``tp`` done; unknown partitions and offsets are ignored."""
        part = self._partitions.get(tp)
        if part is not None:
            part.complete(offset)

    def commit_points(self) -> dict[P, int]:
        """Offsets to commit now: partitions whose watermark advanced past the last commit."""
        points: dict[P, int] = {}
        for tp, part in self._partitions.items():
            offset = part.committable()
            if offset is None:
                continue
            last = self._committed.get(tp)
            if last is None or offset > last:
                points[tp] = offset
        return points

    def mark_committed(self, points: Mapping[P, int]) -> None:
        """Record that ``points`` were committed; a lower offset than recorded is ignored.

        Ignoring lower offsets makes out-of-order commit completions harmless.
        """
        committed = self._committed
        for tp, offset in points.items():
            last = committed.get(tp)
            if last is None or offset > last:
                committed[tp] = offset

    def committable(self, tp: P) -> int | None:
        """The watermark of ``tp`` (see ``PartitionOffsets.committable``); None if unknown."""
        part = self._partitions.get(tp)
        return None if part is None else part.committable()

    def committed(self, tp: P) -> int | None:
        """The offset last recorded by ``mark_committed`` for ``tp``, if any."""
        return self._committed.get(tp)

    def pending(self, tp: P) -> int:
        """Offsets of ``tp`` tracked and not yet complete (0 for an unknown partition)."""
        part = self._partitions.get(tp)
        return 0 if part is None else part.pending

    def total_pending(self) -> int:
        """Pending offsets over all partitions."""
        return sum(part.pending for part in self._partitions.values())

    def forget(self, tp: P) -> None:
        """Drop all state of ``tp``: call on revocation, after its final commit."""
        self._partitions.pop(tp, None)
        self._committed.pop(tp, None)

    def partitions(self) -> tuple[P, ...]:
        """Partitions currently tracked, in the order they were first seen."""
        return tuple(self._partitions)
