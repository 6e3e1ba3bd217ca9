"""The commit ledger: owed records, identity of sources, and commits that may fail."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition
from member_fakes import FakeConsumer, record

from stream.kafka.ledger import CommitLedger
from stream.observability.counters import EventCounters

TP = TopicPartition("in", 0)
OTHER = TopicPartition("in", 1)


def ledger() -> CommitLedger:
    return CommitLedger(EventCounters(), commit_timeout_s=1.0)


async def test_commit_sends_the_lowest_owed_offset_of_each_partition():
    """Offsets 0..3 with 1 still owed: the commit point is 1; nothing else is sent."""
    book, consumer = ledger(), FakeConsumer({TP})
    sources = [record(TP, offset) for offset in range(4)]
    for source in sources:
        book.track(source)
    for source in (sources[0], sources[2], sources[3]):
        book.complete(source)
    assert await book.commit(consumer, {TP})
    assert consumer.commits == [{TP: 1}]
    assert not await book.commit(consumer, {TP})  # nothing advanced: nothing sent
    assert consumer.commits == [{TP: 1}]


async def test_a_source_fetched_again_is_not_completed_by_the_old_one():
    """After a hand-over the same offset fetched again is a new source: the old one cannot
    complete it, the new one can."""
    book = ledger()
    old = record(TP, 0)
    book.track(old)
    book.forget({TP})
    new = record(TP, 0)
    book.track(new)
    book.complete(old)
    assert book.pending({TP}) == 1 and not book.owns(old) and book.owns(new)
    book.complete(new)
    assert book.pending({TP}) == 0


async def test_a_failed_commit_is_not_recorded_and_the_next_one_carries_it():
    """A commit the broker refuses leaves the committed offset unchanged; the next one sends it."""
    book, consumer = ledger(), FakeConsumer({TP})
    source = record(TP, 0)
    book.track(source)
    book.complete(source)
    consumer.fail_commits = 1
    assert not await book.commit(consumer, {TP})
    assert book.offsets.committed(TP) is None
    assert await book.commit(consumer, {TP})
    assert consumer.commits == [{TP: 1}] and book.offsets.committed(TP) == 1


async def test_commit_only_touches_the_partitions_asked_for():
    """Two partitions advanced, one asked for: only that one is committed."""
    book, consumer = ledger(), FakeConsumer({TP, OTHER})
    for tp in (TP, OTHER):
        source = record(tp, 0)
        book.track(source)
        book.complete(source)
    await book.commit(consumer, {OTHER})
    assert consumer.commits == [{OTHER: 1}]


async def test_wait_for_completion_returns_when_the_last_owed_record_completes():
    """The waiter wakes on completion, and reports a timeout as False."""
    book = ledger()
    source = record(TP, 0)
    book.track(source)
    assert not await book.wait_for_completion({TP}, timeout_s=0.05)
    waiting = asyncio.create_task(book.wait_for_completion({TP}, timeout_s=5))
    await asyncio.sleep(0)
    book.complete(source)
    assert await waiting
