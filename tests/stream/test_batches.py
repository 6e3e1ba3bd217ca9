"""Ordered batches: order per partition through failures, one batch in flight, one report each."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, ProducerClosed
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st
from member_fakes import FakeBatchProducer, FakePublisher

from stream.kafka.batches import OrderedBatches, partition_for_key
from stream.kafka.publisher import PublishRejected
from stream.kafka.records import Delivery


def delivery(value: str, key: str = "k", partition: int = 0, topic: str = "out") -> Delivery:
    return Delivery(topic=topic, key=key.encode(), value=value.encode(), partition=partition)


class Reports:
    def __init__(self) -> None:
        self.heard: list[tuple[str, BaseException | None]] = []

    def of(self, name: str):  # type: ignore[no-untyped-def]
        return lambda error: self.heard.append((name, error))


def batches(producer: FakeBatchProducer | None = None, publisher: FakePublisher | None = None,
            max_batch_bytes: int = 16_384) -> tuple[OrderedBatches, FakeBatchProducer,
                                                    FakePublisher]:
    producer = producer or FakeBatchProducer()
    publisher = publisher or FakePublisher()
    return OrderedBatches(producer, publisher, max_batch_bytes=max_batch_bytes), producer, \
        publisher


def test_keys_go_to_the_partition_the_default_partitioner_chooses():
    partitions = list(range(12))
    for key in (b"c1", b"channel-77", b"\x00\xff", b""):
        assert partition_for_key(key, 12) == DefaultPartitioner()(key, partitions, partitions)


async def test_what_is_added_in_one_iteration_goes_out_as_one_batch_in_order():
    queue, producer, _ = batches()
    reports = Reports()
    for i in range(5):
        queue.add(delivery(f"v{i}"), reports.of(f"v{i}"))
    assert queue.waiting == 5 and reports.heard == []  # add never waits for the broker
    assert await queue.flush(5)
    assert [(t, p, [v for _, v in r]) for t, p, r in producer.batches] == \
        [("out", 0, [b"v0", b"v1", b"v2", b"v3", b"v4"])]
    assert reports.heard == [(f"v{i}", None) for i in range(5)] and queue.waiting == 0


async def test_one_batch_in_flight_per_partition_and_the_rest_follows_together():
    queue, producer, _ = batches()
    producer.gate = asyncio.Event()
    reports = Reports()
    queue.add(delivery("first"), reports.of("first"))
    await asyncio.sleep(0.01)
    for i in range(3):  # queued while the first batch waits for its ack
        queue.add(delivery(f"later{i}"), reports.of(f"later{i}"))
    queue.add(delivery("other", partition=1), reports.of("other"))
    await asyncio.sleep(0.01)
    assert producer.in_flight == {("out", 0): 1, ("out", 1): 1}
    producer.gate.set()
    assert await queue.flush(5)
    assert producer.most_in_flight == 1
    by_partition = [(p, [v for _, v in r]) for _, p, r in producer.batches]
    assert (0, [b"first"]) in by_partition and (0, [b"later0", b"later1", b"later2"]) in \
        by_partition
    assert [n for n, _ in reports.heard if n != "other"] == ["first", "later0", "later1", "later2"]


async def test_a_full_batch_is_sent_and_the_next_one_started():
    queue, producer, _ = batches(FakeBatchProducer(capacity=2))
    reports = Reports()
    for i in range(5):
        queue.add(delivery(f"v{i}"), reports.of(f"v{i}"))
    assert await queue.flush(5)
    assert [len(r) for _, _, r in producer.batches] == [2, 2, 1]
    assert [n for n, _ in reports.heard] == [f"v{i}" for i in range(5)]


async def test_a_queued_record_of_the_same_key_is_superseded_and_both_callers_hear():
    queue, producer, _ = batches()
    producer.gate = asyncio.Event()
    reports = Reports()
    queue.add(delivery("s1", key="session"), reports.of("s1"), coalesce=True)
    await asyncio.sleep(0.01)  # s1 in flight: not superseded
    queue.add(delivery("s2", key="session"), reports.of("s2"), coalesce=True)
    queue.add(delivery("x", key="other"), reports.of("x"), coalesce=True)
    queue.add(delivery("s3", key="session"), reports.of("s3"), coalesce=True)
    producer.gate.set()
    assert await queue.flush(5)
    assert [v for _, v in producer.records("out")] == [b"s1", b"x", b"s3"]
    assert [n for n, _ in reports.heard] == ["s1", "x", "s2", "s3"]
    assert queue.waiting == 0


async def test_a_failed_batch_is_published_one_by_one_before_anything_after_it():
    """The batch fails (broker away); its records go out singly, in order, and only then the
    records queued behind it."""
    publisher = FakePublisher()
    queue, producer, _ = batches(publisher=publisher)
    producer.failures["out"] = [KafkaConnectionError("away")]
    producer.gate = asyncio.Event()
    reports = Reports()
    queue.add(delivery("a"), reports.of("a"))
    queue.add(delivery("b"), reports.of("b"))
    await asyncio.sleep(0.01)
    queue.add(delivery("c"), reports.of("c"))
    producer.gate.set()
    assert await queue.flush(5)
    assert [d.value for d in publisher.sent] == [b"a", b"b"]
    assert [v for _, v in producer.records("out")] == [b"c"]
    assert reports.heard == [("a", None), ("b", None), ("c", None)]


async def test_a_record_refused_for_good_is_reported_to_its_caller_alone():
    publisher = FakePublisher()
    queue, producer, _ = batches(publisher=publisher)
    producer.failures["out"] = [MessageSizeTooLargeError()]
    rejected = PublishRejected("out", MessageSizeTooLargeError())
    publisher.errors["out"] = [rejected]
    reports = Reports()
    queue.add(delivery("big"), reports.of("big"))
    queue.add(delivery("fine"), reports.of("fine"))
    assert await queue.flush(5)
    assert reports.heard == [("big", rejected), ("fine", None)]


async def test_a_record_too_large_for_a_batch_goes_alone_in_its_place():
    publisher = FakePublisher()
    queue, producer, _ = batches(publisher=publisher, max_batch_bytes=1024)
    reports = Reports()
    queue.add(delivery("before"), reports.of("before"))
    queue.add(delivery("x" * 2000), reports.of("huge"))
    queue.add(delivery("after"), reports.of("after"))
    assert await queue.flush(5)
    assert [d.value for d in publisher.sent] == [b"x" * 2000]
    assert [v for _, v in producer.records("out")] == [b"before", b"after"]
    assert [n for n, _ in reports.heard] == ["before", "huge", "after"]


async def test_close_reports_what_is_left_as_producer_closed():
    queue, producer, _ = batches()
    producer.gate = asyncio.Event()
    reports = Reports()
    queue.add(delivery("in flight"), reports.of("in flight"))
    await asyncio.sleep(0.01)
    queue.add(delivery("queued"), reports.of("queued"))
    assert not await queue.flush(0.05)
    await queue.close()
    producer.gate.set()
    assert [n for n, _ in reports.heard] == ["in flight", "queued"]
    assert all(isinstance(error, ProducerClosed) for _, error in reports.heard)
    assert queue.waiting == 0



async def test_close_before_a_sender_starts_still_leaves_nothing_to_flush():
    """A sender cancelled before its first step never runs its clean-up; ``close`` reports
    its record and a later ``flush`` returns at once instead of waiting out its timeout."""
    queue, _, _ = batches()
    reports = Reports()
    queue.add(delivery("never sent"), reports.of("never sent"))
    await queue.close()
    assert [n for n, _ in reports.heard] == ["never sent"] and queue.waiting == 0
    assert await queue.flush(0.05)

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.booleans()), max_size=40),
       st.lists(st.booleans(), max_size=10), st.integers(1, 4))
def test_every_caller_hears_once_and_order_holds_per_partition_and_key(
        adds: list[tuple[int, int, bool]], failing: list[bool], capacity: int) -> None:
    """Random adds over partitions and keys, some coalescing, random batch failures: every
    caller hears exactly once; nothing is written twice; per partition the records added
    without coalescing land in the order added; per key the values land in the order added,
    the last one being the key's last value."""

    async def scenario() -> None:
        publisher = FakePublisher()
        producer = FakeBatchProducer(capacity=capacity, landed=publisher.sent)
        producer.failures["out"] = [KafkaConnectionError("away") for f in failing if f]
        queue = OrderedBatches(producer, publisher, max_batch_bytes=16_384)
        heard: list[int] = []
        last: dict[tuple[int, bytes], int] = {}
        plain: set[int] = set()
        for n, (partition, key, coalesce) in enumerate(adds):
            last[(partition, b"%d" % key)] = n
            if not coalesce:
                plain.add(n)
            queue.add(Delivery("out", b"%d" % key, b"%d" % n, partition=partition),
                      lambda error, n=n: heard.append(n),
                      coalesce=coalesce)
            if n % 7 == 3:
                await asyncio.sleep(0)
        assert await queue.flush(5)
        assert sorted(heard) == list(range(len(adds)))
        landed = [(d.partition, d.key, int(d.value or b"")) for d in publisher.sent]
        assert len({n for _, _, n in landed}) == len(landed)
        for partition in range(3):
            in_partition = [(k, n) for p, k, n in landed if p == partition]
            ordered = [n for _, n in in_partition if n in plain]
            assert ordered == sorted(ordered)
            for key in {k for k, _ in in_partition}:
                values = [n for k, n in in_partition if k == key]
                assert values == sorted(values) and values[-1] == last[(partition, key)]

    asyncio.run(scenario())
