"""Hand-overs on a broker that forms the next generation without waiting for this member:
commit while waiting, stop at a refused commit, and never skip what the ledger still tracks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition
from member_fakes import FakeConsumer, record

from stream.kafka.backpressure import Backpressure
from stream.kafka.handover import Membership
from stream.kafka.ledger import CommitLedger
from stream.kafka.readiness import Readiness
from stream.observability.counters import EventCounters

REVOKED = TopicPartition("in", 1)


class MovingOnConsumer(FakeConsumer):
    """Accepts commits until ``move_on``, then refuses them as a group in a new generation."""

    def __init__(self, partitions: set[TopicPartition]) -> None:
        super().__init__(partitions)
        self.moved_on = False

    def move_on(self) -> None:
        self.moved_on = True

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.moved_on:
            raise CommitFailedError("the group has already rebalanced")
        await super().commit(offsets)


class NoEngine:
    def __init__(self) -> None:
        self.released: list[set[Any]] = []

    def release_partitions(self, partitions: Any) -> list[Any]:
        self.released.append(set(partitions))
        return []


def membership(consumer: FakeConsumer, timeout_s: float = 5.0
               ) -> tuple[Membership, CommitLedger, NoEngine]:
    counters = EventCounters()
    ledger, engine = CommitLedger(counters, 1.0), NoEngine()
    member = Membership(consumer, engine, ledger, Readiness(),
                        Backpressure(consumer, limit=10, counters=counters), timeout_s)
    member.took_over({REVOKED})
    return member, ledger, engine


async def test_work_completed_during_a_hand_over_is_committed_before_it_ends():
    """While the hand-over waits for owed work, what completes is committed within ~0.1 s."""
    consumer = MovingOnConsumer({REVOKED})
    member, ledger, _ = membership(consumer)
    first, second = record(REVOKED, 0), record(REVOKED, 1)
    for source in (first, second):
        ledger.track(source)
    handing = asyncio.create_task(member.hand_over({REVOKED}))
    ledger.complete(first)
    async with asyncio.timeout(10):  # the wait commits every ~0.1 s; a loaded machine is slower
        while not consumer.commits:
            await asyncio.sleep(0.01)
    assert consumer.commits == [{REVOKED: 1}]
    assert not handing.done()  # still waiting for the second record
    ledger.complete(second)
    await handing
    assert consumer.commits == [{REVOKED: 1}, {REVOKED: 2}]


async def test_a_refused_commit_ends_the_hand_over_at_once():
    """Once the group refuses a commit the wait stops, the partition is let go of and no final
    commit is attempted: its new owner is already answering it."""
    consumer = MovingOnConsumer({REVOKED})
    member, ledger, engine = membership(consumer, timeout_s=10.0)
    done, stuck = record(REVOKED, 0), record(REVOKED, 1)
    for source in (done, stuck):
        ledger.track(source)
    consumer.move_on()
    handing = asyncio.create_task(member.hand_over({REVOKED}))
    ledger.complete(done)
    await asyncio.wait_for(handing, timeout=1.0)
    assert consumer.commits == []
    assert engine.released == [{REVOKED}]
    assert not ledger.owns(stuck) and member.assignment == set()


async def test_an_earlier_refusal_does_not_skip_the_final_commit():
    """A periodic commit refused before the rebalance does not stop the hand-over's own."""
    consumer = MovingOnConsumer({REVOKED})
    member, ledger, _ = membership(consumer)
    source = record(REVOKED, 0)
    ledger.track(source)
    ledger.complete(source)
    consumer.move_on()
    await ledger.commit(consumer, {REVOKED})
    assert ledger.refused
    consumer.moved_on = False
    await member.hand_over({REVOKED})
    assert consumer.commits == [{REVOKED: 1}]


def test_the_ledger_lists_partitions_not_yet_in_the_assignment():
    """Records of a partition fetched before the assignment callback ran are committable."""
    ledger = CommitLedger(EventCounters(), 1.0)
    ledger.track(record(REVOKED, 0))
    assert ledger.partitions() == (REVOKED,)
    ledger.forget({REVOKED})
    assert ledger.partitions() == ()


async def test_a_refusal_from_before_the_hand_over_does_not_end_its_wait():
    """A stale refusal is not read as this hand-over's: with nothing new to commit, the
    hand-over keeps waiting for the owed record and then commits it."""
    consumer = MovingOnConsumer({REVOKED})
    member, ledger, _ = membership(consumer)
    done, owed = record(REVOKED, 0), record(REVOKED, 1)
    for source in (done, owed):
        ledger.track(source)
    consumer.move_on()
    ledger.complete(done)
    await ledger.commit(consumer, {REVOKED})
    consumer.moved_on = False
    ledger.offsets.mark_committed({REVOKED: 1})  # as if an earlier commit had landed
    waits = 0
    wait_for_completion = ledger.wait_for_completion

    async def counted(*args: Any) -> bool:
        nonlocal waits
        waits += 1
        return await wait_for_completion(*args)

    ledger.wait_for_completion = counted  # type: ignore[method-assign]
    handing = asyncio.create_task(member.hand_over({REVOKED}))
    async with asyncio.timeout(10):
        while waits < 3 and not handing.done():  # past the step a stale refusal would end
            await asyncio.sleep(0.01)
    assert not handing.done()
    ledger.complete(owed)
    await handing
    assert consumer.commits == [{REVOKED: 2}]
