"""The commit ledger: which records this member owes an answer, and what it may commit.

Rules, in the order they decide:
1. A record is owed from ``track`` until ``complete`` (answered or dead-lettered and
   acknowledged) or until its partition is ``forget``-ten (handed over).
2. Only the record source that was tracked can complete its offset (compared by identity): work
   left over from before a hand-over cannot complete a record fetched again since.
3. A commit sends, for each owned partition that advanced, the lowest offset still owed (the
   watermark, ``OffsetTracker``), waits at most the commit timeout, and is recorded only when
   the broker accepted it. A failed commit is retried by the next one: offsets only grow.
4. ``refused`` tells whether the last commit sent was refused because the group has moved on
   to a new generation (the partitions may already be another member's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from stream.kafka.client import GroupConsumer
from stream.kafka.offsets import OffsetTracker
from stream.kafka.records import RecordSource
from stream.observability.counters import EventCounters

__all__ = ["CommitLedger"]

log = logging.getLogger(__name__)


class CommitLedger:
    def __init__(self, counters: EventCounters, commit_timeout_s: float) -> None:
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._owed: dict[TopicPartition, dict[int, RecordSource]] = {}
        self._progress = asyncio.Event()
        self._counters = counters
        self._commit_timeout_s = commit_timeout_s
        self.refused = False

    def track(self, source: RecordSource) -> None:
        self.offsets.track(source.tp, source.offset)
        owed = self._owed.get(source.tp)
        if owed is None:
            owed = self._owed[source.tp] = {}
        owed[source.offset] = source

    def owns(self, source: RecordSource) -> bool:
        """Whether ``source`` is still this member's to answer (not handed over, not done)."""
        owed = self._owed.get(source.tp)
        return owed is not None and owed.get(source.offset) is source

    def complete(self, source: RecordSource) -> None:
        owed = self._owed.get(source.tp)
        if owed is None or owed.get(source.offset) is not source:
            return  # done already, or a stale source: the record fetched again stays owed
        del owed[source.offset]
        self.offsets.complete(source.tp, source.offset)
        self._progress.set()

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Let go of ``partitions``: nothing still in flight for them can complete."""
        for tp in partitions:
            self.offsets.forget(tp)
            self._owed.pop(tp, None)

    def partitions(self) -> tuple[TopicPartition, ...]:
        """Partitions with records tracked and not let go of."""
        return self.offsets.partitions()

    def pending(self, partitions: Collection[TopicPartition]) -> int:
        return sum(self.offsets.pending(tp) for tp in partitions)

    def oldest_timestamp_ms(self, tp: TopicPartition) -> int | None:
        """The producer timestamp of the oldest record of ``tp`` still owed."""
        stamps = [s.timestamp_ms for s in (self._owed.get(tp) or {}).values() if s.timestamp_ms]
        return min(stamps) if stamps else None

    async def wait_for_completion(self, partitions: Collection[TopicPartition],
                                  timeout_s: float) -> bool:
        """Wait until nothing of ``partitions`` is owed; False if the timeout passed."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.pending(partitions):
                    self._progress.clear()
                    await self._progress.wait()
            return True
        except TimeoutError:
            return False

    def commit_points(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        owned = set(partitions)
        return {tp: offset for tp, offset in self.offsets.commit_points().items() if tp in owned}

    async def commit(self, consumer: GroupConsumer, partitions: Collection[TopicPartition],
                     timeout_s: float | None = None) -> bool:
        """Commit the watermarks of ``partitions`` that advanced; True if the broker took them."""
        points = self.commit_points(partitions)
        if not await self.send(consumer, points, timeout_s):
            return False
        self.offsets.mark_committed(points)
        return True

    async def send(self, consumer: GroupConsumer, points: dict[TopicPartition, int],
                   timeout_s: float | None = None) -> bool:
        """Send ``points`` as they are (used when the partitions are already let go)."""
        if not points:
            return False
        timeout_s = self._commit_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.commit(points)
        except (KafkaError, TimeoutError) as exc:
            # The group is rebalancing or the broker is away. A timed-out request may still
            # land; either way the next commit carries these offsets too (offsets only grow),
            # and after a shutdown the next owner resumes from the last commit that landed.
            log.warning("commit of %d partitions failed: %r", len(points), exc)
            self.refused = isinstance(exc, CommitFailedError)
            return False
        self.refused = False
        self._counters.commits += 1
        return True
