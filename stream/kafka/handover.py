"""Group membership: which partitions this member owns, and handing them over cleanly.

On revocation (``hand_over``), in this order: the member stops counting as ready; work owed
for the revoked partitions gets up to the rebalance timeout to finish, its watermarks committed
every ``_COMMIT_STEP_S`` meanwhile, and the wait ends early when the group refuses a commit (it
moved on without this member); what is still queued is dropped from the engine (the next owner
answers it); the ledger lets go of them, so work still in flight can neither publish nor
complete; then their watermarks are committed, inside the revoke callback, while this member
still holds the generation (unless the group already refused it).
On assignment (``took_over``), the new partitions are owned (and paused while backpressure is
on); their sessions are restored in the background (``stream.kafka.restoring``), the
partitions held and the member not ready until that ends. A hand-over cancels a restore still
running.
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
from stream.kafka.restoring import PartitionRestore

__all__ = ["Membership"]

log = logging.getLogger(__name__)

# How often a hand-over commits what completed while it waits: what a refused commit can cost
# is what completed since the previous one.
_COMMIT_STEP_S = 0.1


class ReleasesPartitions(Protocol):
    def release_partitions(self, partitions: Collection[Hashable]) -> list[Any]: ...


class Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: GroupConsumer, engine: ReleasesPartitions, ledger: CommitLedger,
                 readiness: Readiness, backpressure: Backpressure,
                 rebalance_timeout_s: float) -> None:
        self.assignment: set[TopicPartition] = set()
        self._revoked: list[frozenset[TopicPartition]] = []  # each hand-over's partitions
        self._handing_over: frozenset[TopicPartition] = frozenset()  # the one under way
        # Restores the sessions of newly assigned partitions (the changelog), when there is one.
        self.restore: Callable[[Collection[TopicPartition]], Awaitable[Any]] | None = None
        self._consumer = consumer
        self._engine = engine
        self._ledger = ledger
        self._readiness = readiness
        self._backpressure = backpressure
        self._timeout_s = rebalance_timeout_s
        self._restoring: PartitionRestore | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Returns at once: aiokafka heartbeats again only after this callback (see
        # ``stream.kafka.restoring``); the partitions stay held until their sessions are back.
        restoring = self.restore is not None and bool(assigned)
        self.took_over(assigned, ready=not restoring)
        if restoring:
            assert self.restore is not None
            if self._restoring is None:
                self._restoring = PartitionRestore(self.restore, self._backpressure,
                                                   self._timeout_s, self._restored)
            self._restoring.start(assigned)

    def _restored(self) -> None:
        self._readiness.set_member(bool(self.assignment))

    async def restored(self) -> None:
        """Until the sessions of the latest assignment are restored (or given up on)."""
        if self._restoring is not None:
            await self._restoring.wait()

    async def close(self) -> None:
        """Stop a restore still running (the member is stopping)."""
        if self._restoring is not None:
            await self._restoring.cancel()

    async def hand_over(self, revoked: Collection[TopicPartition]) -> None:
        """See the module docstring. Work still queued past the deadline is left to the next
        owner (its offsets are not committed)."""
        if not revoked:
            return
        self._revoked.append(frozenset(revoked))
        self._handing_over = frozenset(revoked)
        try:
            await self._hand_over(revoked)
        finally:
            self._handing_over = frozenset()

    async def _hand_over(self, revoked: Collection[TopicPartition]) -> None:
        self._readiness.set_member(False)
        if self._restoring is not None and self._restoring.running:
            # aiokafka revokes the whole assignment: the restore of part of it is moot.
            await self._restoring.cancel()
            if kept := self._restoring.partitions - set(revoked):
                log.warning("restore of %d partitions still owned ended by a hand-over: "
                            "their sessions start empty", len(kept))
                self._backpressure.let_go(kept)
        deadline = time.monotonic() + self._timeout_s
        # A broker may form the next generation before this callback returns (the embedded
        # one does, about 2 s after the first member rejoins) and from then on refuses this
        # member's commits while the new owner starts from the last one that landed. So what
        # completes is committed as it completes, and a refused commit ends the wait: the
        # partitions are someone else's, and anything answered from here on is a duplicate.
        refused = False
        while not await self._ledger.wait_for_completion(
                revoked, max(0.0, min(_COMMIT_STEP_S, deadline - time.monotonic()))):
            if self._ledger.commit_points(revoked):  # else ``refused`` is an older commit's
                await self._ledger.commit(self._consumer, revoked,
                                          timeout_s=max(0.5, deadline - time.monotonic()))
                refused = self._ledger.refused
            if refused or time.monotonic() >= deadline:
                break
        dropped = self._engine.release_partitions(revoked)
        points = self._ledger.commit_points(revoked)
        self._ledger.forget(revoked)
        self.assignment -= set(revoked)
        if not refused:
            await self._ledger.send(self._consumer, points,
                                    timeout_s=max(0.5, deadline - time.monotonic()))
        log.info("handed over %d partitions (%d queued events left to the next owner%s)",
                 len(revoked), len(dropped), "; the group had moved on" if refused else "")

    @property
    def handovers(self) -> int:
        """Hand-overs begun so far."""
        return len(self._revoked)

    @property
    def serving(self) -> set[TopicPartition]:
        """The partitions owned and not being handed over: a session of one of them that ends
        for good is this member's to tombstone; one of a partition handed over (or being
        handed over) is the next owner's."""
        return self.assignment - self._handing_over

    def revoked_since(self, handovers: int) -> frozenset[TopicPartition]:
        """The partitions handed over since ``handovers`` hand-overs had begun."""
        return frozenset().union(*self._revoked[handovers:])

    def took_over(self, assigned: Collection[TopicPartition], ready: bool = True) -> None:
        """Own ``assigned``; ready to serve them unless their sessions are still restored."""
        self.assignment = set(assigned)
        if self._backpressure.paused:
            self._consumer.pause(*assigned)
        self._readiness.set_member(ready and bool(assigned))
        log.info("assigned %d partitions", len(assigned))
