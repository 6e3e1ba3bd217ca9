"""Group membership: which partitions this member owns, and handing them over cleanly.

On revocation (``hand_over``), in this order: the member stops counting as ready; in-flight
work of the revoked partitions gets up to the rebalance timeout to finish; their queued work is
dropped from the engine (the next owner answers it); the ledger lets go of them, so work still
in flight can neither publish nor complete; then their watermarks are committed, inside the
revoke callback, while this member still holds the generation.
On assignment (``took_over``), the new partitions are owned (and paused if backpressure is on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from stream.kafka.backpressure import Backpressure
from stream.kafka.client import GroupConsumer
from stream.kafka.ledger import CommitLedger
from stream.kafka.readiness import Readiness

__all__ = ["Membership"]

log = logging.getLogger(__name__)


class ReleasesPartitions(Protocol):
    def release_partitions(self, partitions: Collection[Hashable]) -> list[Any]: ...


class Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: GroupConsumer, engine: ReleasesPartitions, ledger: CommitLedger,
                 readiness: Readiness, backpressure: Backpressure,
                 rebalance_timeout_s: float) -> None:
        self.assignment: set[TopicPartition] = set()
        # Restores the sessions of newly assigned partitions (the changelog), when there is one.
        self.restore: Callable[[Collection[TopicPartition]], Awaitable[Any]] | None = None
        self._consumer = consumer
        self._engine = engine
        self._ledger = ledger
        self._readiness = readiness
        self._backpressure = backpressure
        self._timeout_s = rebalance_timeout_s

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # aiokafka fetches nothing of the new partitions before this returns, so their
        # sessions are back before any of their events is processed.
        if self.restore is not None and assigned:
            await self.restore(assigned)
        self.took_over(assigned)

    async def hand_over(self, revoked: Collection[TopicPartition]) -> None:
        """See the module docstring. Work still queued past the deadline is left to the next
        owner (its offsets are not committed)."""
        if not revoked:
            return
        self._readiness.set_member(False)
        deadline = time.monotonic() + self._timeout_s
        await self._ledger.wait_for_completion(revoked, self._timeout_s)
        dropped = self._engine.release_partitions(revoked)
        points = self._ledger.commit_points(revoked)
        self._ledger.forget(revoked)
        self.assignment -= set(revoked)
        await self._ledger.send(self._consumer, points,
                                timeout_s=max(0.5, deadline - time.monotonic()))
        log.info("handed over %d partitions (%d queued events left to the next owner)",
                 len(revoked), len(dropped))

    def took_over(self, assigned: Collection[TopicPartition]) -> None:
        self.assignment = set(assigned)
        if self._backpressure.paused:
            self._consumer.pause(*assigned)
        self._readiness.set_member(bool(assigned))
        log.info("assigned %d partitions", len(assigned))
