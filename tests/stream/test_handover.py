"""Hand-overs without a broker: finish, drop, let go, then commit while still a member."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition
from member_fakes import FakeConsumer, record

from stream.devtools.bots import event_for
from stream.kafka.backpressure import Backpressure
from stream.kafka.fair_fetch import Taken
from stream.kafka.handover import Membership
from stream.kafka.ledger import CommitLedger
from stream.kafka.member import StreamRunner
from stream.kafka.readiness import Readiness
from stream.observability.counters import EventCounters
from stream.settings import load_settings

KEPT, REVOKED = TopicPartition("in", 0), TopicPartition("in", 1)


class FakeEngine:
    def __init__(self) -> None:
        self.released: list[set[Any]] = []

    def release_partitions(self, partitions: Any) -> list[Any]:
        self.released.append(set(partitions))
        return ["queued"]


def membership(timeout_s: float = 1.0) -> tuple[Membership, CommitLedger, FakeConsumer,
                                                FakeEngine, Readiness, Backpressure]:
    counters = EventCounters()
    consumer, engine = FakeConsumer({KEPT, REVOKED}), FakeEngine()
    ledger, readiness = CommitLedger(counters, 1.0), Readiness()
    backpressure = Backpressure(consumer, limit=10, counters=counters)
    member = Membership(consumer, engine, ledger, readiness, backpressure, timeout_s)
    return member, ledger, consumer, engine, readiness, backpressure


async def test_hand_over_waits_for_in_flight_work_then_commits_it():
    """An owed record that completes during the hand-over is committed with it."""
    member, ledger, consumer, engine, _, _ = membership()
    member.took_over({KEPT, REVOKED})
    source = record(REVOKED, 0)
    ledger.track(source)
    handing = asyncio.create_task(member.hand_over({REVOKED}))
    await asyncio.sleep(0.01)
    assert consumer.commits == []  # still waiting for the record in flight
    ledger.complete(source)
    await handing
    assert consumer.commits == [{REVOKED: 1}]
    assert engine.released == [{REVOKED}]
    assert member.assignment == {KEPT}


async def test_past_the_deadline_the_owed_record_is_left_to_the_next_owner():
    """A record still owed at the deadline is not committed, and can no longer complete."""
    member, ledger, consumer, _, _, _ = membership(timeout_s=0.05)
    member.took_over({KEPT, REVOKED})
    done, stuck = record(REVOKED, 0), record(REVOKED, 1)
    for source in (done, stuck):
        ledger.track(source)
    ledger.complete(done)
    await member.hand_over({REVOKED})
    assert consumer.commits == [{REVOKED: 1}]  # through the completed one only
    assert not ledger.owns(stuck)


async def test_readiness_follows_the_assignment():
    """Ready once partitions are assigned; not ready from the start of a hand-over."""
    member, _, _, _, readiness, _ = membership()
    member.took_over({KEPT})
    assert readiness.ready.is_set()
    await member.hand_over({KEPT})
    assert not readiness.ready.is_set()


async def test_partitions_assigned_while_paused_start_paused():
    """Backpressure on: newly assigned partitions are paused at once."""
    member, _, consumer, _, _, backpressure = membership()
    backpressure.apply(buffered=10)
    consumer.paused.clear()
    member.took_over({REVOKED})
    assert consumer.paused == {REVOKED}


async def test_backpressure_pauses_at_the_limit_and_resumes_below_half():
    """Paused at the limit, still paused above half of it, resumed at half."""
    _, _, consumer, _, _, backpressure = membership()
    backpressure.apply(10)
    assert consumer.paused == {KEPT, REVOKED}
    backpressure.apply(6)
    assert backpressure.paused
    backpressure.apply(5)
    assert consumer.paused == set() and not backpressure.paused


async def test_new_partitions_stay_paused_until_their_sessions_are_restored():
    """While the restore of an assignment runs, its partitions are paused; resumed after."""
    member, _, consumer, _, _, _ = membership()
    seen_paused: list[set[Any]] = []

    async def restore(assigned: Any) -> None:
        seen_paused.append(set(consumer.paused))

    member.restore = restore
    await member.on_partitions_assigned({KEPT, REVOKED})
    await member.restored()
    assert seen_paused == [{KEPT, REVOKED}]
    assert consumer.paused == set() and member.assignment == {KEPT, REVOKED}


async def test_a_restore_under_backpressure_leaves_the_partitions_paused():
    """Backpressure on: the restored partitions are not resumed by the restore."""
    member, _, consumer, _, _, backpressure = membership()
    backpressure.apply(buffered=10)

    async def restore(assigned: Any) -> None:
        return None

    member.restore = restore
    await member.on_partitions_assigned({REVOKED})
    await member.restored()
    assert REVOKED in consumer.paused


async def test_the_partitions_handed_over_since_a_mark_are_known_also_when_given_back():
    """The member leaves records in hand of a partition handed over meanwhile, even if the
    partition came back (its position was reset: they will be fetched again)."""
    member, *_ = membership()
    member.took_over({KEPT, REVOKED})
    mark = member.handovers
    assert member.revoked_since(mark) == frozenset()
    await member.hand_over({REVOKED})
    member.took_over({KEPT, REVOKED})
    await member.hand_over({KEPT})
    assert member.revoked_since(mark) == {KEPT, REVOKED}
    assert member.revoked_since(mark + 1) == {KEPT}


async def test_backpressure_ending_during_a_restore_leaves_the_restoring_partitions_paused():
    """Backpressure that lets go while an assignment's sessions are still being restored
    resumes the other partitions only: a record of a restoring partition taken now would
    start its session empty and the restored copy would be refused as older."""
    member, _, consumer, _, _, backpressure = membership()
    member.took_over({KEPT})
    backpressure.apply(buffered=10)
    consumer.partitions = {KEPT, REVOKED}  # the consumer already owns the new assignment
    seen_paused: list[set[Any]] = []

    async def restore(assigned: Any) -> None:
        backpressure.apply(buffered=0)  # the member loop answered its backlog meanwhile
        seen_paused.append(set(consumer.paused))

    member.restore = restore
    await member.on_partitions_assigned({REVOKED})
    await member.restored()
    assert seen_paused == [{REVOKED}]
    assert consumer.paused == set() and not backpressure.paused


async def test_backpressure_starting_during_a_restore_keeps_the_partitions_paused_after():
    member, _, consumer, _, _, backpressure = membership()

    async def restore(assigned: Any) -> None:
        backpressure.apply(buffered=10)

    member.restore = restore
    await member.on_partitions_assigned({KEPT, REVOKED})
    await member.restored()
    assert consumer.paused == {KEPT, REVOKED} and backpressure.paused
    backpressure.apply(buffered=0)
    assert consumer.paused == set()


async def test_a_failed_restore_still_takes_the_partitions_over_with_empty_sessions(caplog):
    """A restore that keeps failing (the changelog cannot be read) is retried within the
    rebalance timeout, then logged; the member still owns, resumes and reports the
    partitions, as when a restore runs out of time."""
    member, _, consumer, _, readiness, _ = membership(timeout_s=0.3)
    attempts = 0

    async def restore(assigned: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("changelog unreachable")

    member.restore = restore
    await member.on_partitions_assigned({KEPT, REVOKED})
    assert not readiness.ready.is_set() and consumer.paused == {KEPT, REVOKED}
    await member.restored()
    assert attempts >= 2  # tried again before giving up
    assert member.assignment == {KEPT, REVOKED} and readiness.ready.is_set()
    assert consumer.paused == set()
    assert "start empty" in caplog.text and "changelog unreachable" in caplog.text


async def test_a_restore_failing_once_is_tried_again_before_the_partitions_are_served():
    member, _, consumer, _, readiness, _ = membership()
    attempts = 0

    async def restore(assigned: Any) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("broker restarting")
        assert consumer.paused == {KEPT}  # still held on the second try

    member.restore = restore
    await member.on_partitions_assigned({KEPT})
    await member.restored()
    assert attempts == 2 and readiness.ready.is_set() and consumer.paused == set()


async def test_the_assignment_callback_returns_while_the_restore_goes_on():
    """aiokafka heartbeats only after the callback returns: a restore must not hold it."""
    member, _, consumer, _, readiness, _ = membership()
    go_on = asyncio.Event()

    async def restore(assigned: Any) -> None:
        await go_on.wait()

    member.restore = restore
    async with asyncio.timeout(5):
        await member.on_partitions_assigned({KEPT})
    assert member.assignment == {KEPT} and consumer.paused == {KEPT}
    assert not readiness.ready.is_set()  # not serving before the sessions are back
    go_on.set()
    await member.restored()
    assert readiness.ready.is_set() and consumer.paused == set()


async def test_a_hand_over_during_a_restore_cancels_it_and_resumes_nothing():
    member, _, consumer, _, readiness, _ = membership()
    cancelled = asyncio.Event()

    async def restore(assigned: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    member.restore = restore
    await member.on_partitions_assigned({KEPT, REVOKED})
    await asyncio.sleep(0)
    await member.hand_over({KEPT, REVOKED})
    assert cancelled.is_set() and member.assignment == set()
    assert consumer.paused == {KEPT, REVOKED}  # not resumed: no longer this member's
    assert not readiness.ready.is_set()


async def test_a_stray_cancellation_of_the_restore_is_a_failed_restore(caplog):
    member, _, consumer, _, readiness, _ = membership()

    async def restore(assigned: Any) -> None:
        raise asyncio.CancelledError  # a client's own, nothing cancelled the restore

    member.restore = restore
    await member.on_partitions_assigned({KEPT})
    await member.restored()
    assert readiness.ready.is_set() and consumer.paused == set()
    assert "CancelledError" in caplog.text


async def test_a_restore_started_over_a_running_one_keeps_its_partitions_held():
    """A second assignment while a restore still runs: the first one's cancellation must not
    release the hold of the second, which restores the same partitions."""
    member, _, consumer, _, _, backpressure = membership()
    go_on = asyncio.Event()
    started = 0

    async def restore(assigned: Any) -> None:
        nonlocal started
        started += 1
        await go_on.wait()

    member.restore = restore
    await member.on_partitions_assigned({KEPT})
    await asyncio.sleep(0)
    await member.on_partitions_assigned({KEPT})
    await asyncio.sleep(0.01)  # the first restore has handled its cancellation
    backpressure.apply(buffered=10)
    backpressure.apply(buffered=0)  # backpressure lets go while the second restore runs
    assert started == 2 and consumer.paused == {KEPT}
    go_on.set()
    await member.restored()
    assert consumer.paused == set()


class SubmittingEngine:
    def __init__(self) -> None:
        self.partitions: list[TopicPartition] = []

    def submit(self, event: Any, source: Any = None, trace: Any = None) -> None:
        self.partitions.append(source.tp)


def taken_of(handovers: int, tp: TopicPartition) -> Taken:
    value = orjson.dumps(event_for("b", "c", "u", "hi"))
    return Taken(handovers, tp, [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"c",
                                                value, None, 1, 1, []) for offset in range(3)])


def taking_runner(member: Membership) -> tuple[StreamRunner, SubmittingEngine]:
    engine = SubmittingEngine()
    runner = StreamRunner(load_settings(), lambda sink: engine)
    runner.engine, runner._membership = engine, member  # type: ignore[assignment]
    runner._sink = object()  # type: ignore[assignment]  # valid events never reach it
    return runner, engine


async def test_records_taken_before_a_hand_over_began_are_left_to_the_next_owner():
    """Records in hand of a partition handed over since they were taken (``take_in_turn``
    went on asking other partitions meanwhile) are not admitted; the kept partition's are."""
    member, *_ = membership()
    member.took_over({KEPT, REVOKED})
    runner, engine = taking_runner(member)
    before = member.handovers
    await member.hand_over({REVOKED})
    await runner._take_all([taken_of(before, REVOKED), taken_of(before, KEPT)])
    assert engine.partitions == [KEPT] * 3
    assert set(runner.ledger.partitions()) == {KEPT}


async def test_records_taken_after_a_hand_over_are_admitted():
    """Records a call returned after the hand-over (the partition came back, fetched from its
    committed offset) are the member's: leaving them would leave them unanswered."""
    member, *_ = membership()
    member.took_over({KEPT, REVOKED})
    runner, engine = taking_runner(member)
    before = member.handovers
    await member.hand_over({REVOKED})
    member.took_over({KEPT, REVOKED})
    await runner._take_all([taken_of(before, KEPT), taken_of(member.handovers, REVOKED)])
    assert engine.partitions == [KEPT] * 3 + [REVOKED] * 3


async def test_a_partition_being_handed_over_is_no_longer_served():
    """While a hand-over waits for its partitions' work, they are still owned but no longer
    served: a session of theirs that ends meanwhile is the next owner's, not tombstoned here."""
    member, ledger, _, _, _, _ = membership()
    member.took_over({KEPT, REVOKED})
    assert member.serving == {KEPT, REVOKED}
    source = record(REVOKED, 0)
    ledger.track(source)
    handing = asyncio.create_task(member.hand_over({REVOKED}))
    await asyncio.sleep(0.01)
    assert member.assignment == {KEPT, REVOKED} and member.serving == {KEPT}
    ledger.complete(source)
    await handing
    assert member.assignment == member.serving == {KEPT}
