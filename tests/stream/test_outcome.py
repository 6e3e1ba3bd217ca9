"""The Kafka sink: every record ends answered or dead-lettered, exactly once, without a broker."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, ProducerClosed
from aiokafka.structs import TopicPartition
from member_fakes import FakeBatchProducer, FakePublisher, record, work_item

from schemas.codec import DecodeError
from stream.engine.work import EngineStopped, build_response
from stream.kafka.batches import Done, OrderedBatches
from stream.kafka.dead_letter import reason_of
from stream.kafka.ledger import CommitLedger
from stream.kafka.outcome import KafkaSink
from stream.kafka.publisher import PublishRejected
from stream.kafka.records import Delivery, RecordSource
from stream.observability.counters import EventCounters

TP = TopicPartition("in", 0)


class Sink:
    """A Kafka sink over fakes of the producer (batches) and the publisher (one by one)."""

    def __init__(self) -> None:
        self.counters = EventCounters()
        self.ledger, self.publisher = CommitLedger(self.counters, 1.0), FakePublisher()
        self.producer = FakeBatchProducer()
        self.batches = OrderedBatches(self.producer, self.publisher, max_batch_bytes=16_384)
        self.exit = KafkaSink(self.publisher, self.batches, self.ledger, self.counters,
                              response_topic="out", dlq_topic="dlq")

    async def ready(self) -> Sink:
        await self.batches.prepare(["out"])
        return self


async def sink() -> tuple[KafkaSink, CommitLedger, FakePublisher]:
    made = await Sink().ready()
    return made.exit, made.ledger, made.publisher


def response_for(item):  # type: ignore[no-untyped-def]
    return build_response(item, "hi", {}, [], queued_ms=0.0, processing_ms=1.0)


async def test_an_answered_record_is_published_then_its_offset_completes():
    """The response goes to the response topic keyed by channel; once acknowledged, the record
    is no longer owed."""
    made = await Sink().ready()
    source = record(TP, 0)
    made.ledger.track(source)
    item = work_item(source)
    made.exit.answered(item, response_for(item))
    assert made.ledger.pending({TP}) == 1 and made.exit.in_flight == 1  # not acknowledged yet
    assert await made.exit.flush(5)
    ((key, value),) = made.producer.records("out")
    assert key == b"c" and orjson.loads(value)["in_reply_to"] == item.event.event_id
    assert made.ledger.pending({TP}) == 0 and made.counters.answered == 1
    assert made.exit.in_flight == 0


async def test_a_response_refused_for_good_is_dead_lettered_with_stage_publish():
    """A too-large response: the original record goes to the DLQ, then the offset completes."""
    made = await Sink().ready()
    exit_, ledger, publisher = made.exit, made.ledger, made.publisher
    source = record(TP, 0, "original bytes")
    ledger.track(source)
    item = work_item(source)
    made.producer.failures["out"] = [MessageSizeTooLargeError()]  # the batch, then the record
    publisher.errors["out"] = [PublishRejected("out", MessageSizeTooLargeError())]
    exit_.answered(item, response_for(item))
    await exit_.flush(5)
    await exit_.wait_for_dead_letters(5)
    (dead,) = publisher.sent
    assert dead.topic == "dlq" and dead.value == b"original bytes"
    assert reason_of(dead.headers)["error.stage"] == "publish"
    assert reason_of(dead.headers)["error.type"] == "MessageSizeTooLargeError"
    assert ledger.pending({TP}) == 0 and exit_.counters.failed == 1


async def test_a_failed_event_is_dead_lettered_with_stage_processing():
    """An error from processing dead-letters the record with the error's type."""
    exit_, ledger, publisher = await sink()
    source = record(TP, 0)
    ledger.track(source)
    exit_.failed(work_item(source), RuntimeError("bug"))
    await exit_.wait_for_dead_letters(5)
    assert reason_of(publisher.sent[0].headers)["error.stage"] == "processing"
    assert reason_of(publisher.sent[0].headers)["error.type"] == "RuntimeError"
    assert ledger.pending({TP}) == 0


async def test_a_dropped_event_is_neither_published_nor_completed():
    """EngineStopped (stop, hand-over) leaves the record owed: the next owner answers it."""
    exit_, ledger, publisher = await sink()
    source = record(TP, 0)
    ledger.track(source)
    exit_.failed(work_item(source), EngineStopped("partition revoked"))
    exit_.failed(work_item(source), asyncio.CancelledError())
    await exit_.wait_for_dead_letters(5)
    assert publisher.sent == [] and ledger.pending({TP}) == 1


async def test_an_answer_for_a_handed_over_record_is_not_published():
    """Work that finishes after its partition was let go publishes nothing."""
    made = await Sink().ready()
    source = record(TP, 0)
    made.ledger.track(source)
    made.ledger.forget({TP})
    item = work_item(source)
    made.exit.answered(item, response_for(item))
    await made.exit.flush(5)
    assert made.producer.batches == [] and made.counters.answered == 0


async def test_a_record_the_dlq_refuses_is_sent_without_its_bytes():
    """The DLQ refusing the original bytes gets the reason alone; the offset completes."""
    exit_, ledger, publisher = await sink()
    source = record(TP, 0, "x" * 100)
    ledger.track(source)
    publisher.errors["dlq"] = [PublishRejected("dlq", MessageSizeTooLargeError())]
    exit_.rejected(source, DecodeError("json", "InvalidJSON", "not JSON"), None)
    await exit_.wait_for_dead_letters(5)
    (dead,) = publisher.sent
    assert dead.value is None and reason_of(dead.headers)["error.type"] == "InvalidJSON"
    assert ledger.pending({TP}) == 0 and exit_.counters.dead_lettered == 1


async def test_a_record_with_neither_key_nor_value_is_dead_lettered_with_an_empty_value():
    """aiokafka cannot send a record with neither key nor value, which other clients write: its
    dead letter carries an empty value and says so, and the offset completes."""
    exit_, ledger, publisher = await sink()
    source = RecordSource(tp=TP, offset=0, key=None, value=None)
    ledger.track(source)
    exit_.rejected(source, DecodeError("json", "EmptyValue", "the record has no value"), None)
    await exit_.wait_for_dead_letters(5)
    (dead,) = publisher.sent
    reason = reason_of(dead.headers)
    assert dead.key is None and dead.value == b"" and "value.null" in reason
    assert reason["error.type"] == "EmptyValue"
    assert ledger.pending({TP}) == 0 and exit_.counters.dead_lettered == 1


async def test_a_keyless_record_the_dlq_refuses_is_sent_with_an_empty_value():
    """Without its bytes, a keyless dead letter would have neither key nor value: it goes out
    with an empty one, saying both why the bytes were dropped and that the value is empty."""
    exit_, ledger, publisher = await sink()
    source = RecordSource(tp=TP, offset=0, key=None, value=b"x" * 100)
    ledger.track(source)
    publisher.errors["dlq"] = [PublishRejected("dlq", MessageSizeTooLargeError())]
    exit_.rejected(source, DecodeError("json", "InvalidJSON", "not JSON"), None)
    await exit_.wait_for_dead_letters(5)
    (dead,) = publisher.sent
    reason = reason_of(dead.headers)
    assert dead.value == b"" and {"value.dropped", "value.null"} <= reason.keys()
    assert ledger.pending({TP}) == 0 and exit_.counters.dead_lettered == 1


async def test_a_dead_letter_that_cannot_be_sent_leaves_the_offset_owed():
    """A client error while dead-lettering (stopping, a bug) keeps the record for the next owner."""
    exit_, ledger, publisher = await sink()
    source = record(TP, 0)
    ledger.track(source)
    publisher.errors["dlq"] = [KafkaConnectionError("closed")]
    exit_.failed(work_item(source), RuntimeError("bug"))
    await exit_.wait_for_dead_letters(5)
    assert ledger.pending({TP}) == 1 and exit_.counters.dead_lettered == 0


class _HeldBatches:
    """Batches that hold every delivery's callback, for the test to report on."""

    def __init__(self) -> None:
        self.held: list[tuple[Delivery, Done]] = []

    def partition_of(self, topic: str, key: bytes) -> int:
        return 0

    def add(self, delivery: Delivery, on_done: Done, coalesce: bool = False) -> None:
        self.held.append((delivery, on_done))

    async def flush(self, timeout_s: float) -> bool:
        return True

    async def close(self) -> None:
        return None


class _OneStateRecord:
    def deliveries(self, item):  # type: ignore[no-untyped-def]
        return [Delivery(topic="sessions", key=b"s", value=b"{}", partition=0)]


def _answered_with(changelog):  # type: ignore[no-untyped-def]
    """A sink over held batches and ``changelog``, and one record answered through it."""
    counters = EventCounters()
    ledger, publisher, batches = CommitLedger(counters, 1.0), FakePublisher(), _HeldBatches()
    exit_ = KafkaSink(publisher, batches, ledger, counters, response_topic="out",
                      dlq_topic="dlq", changelog=changelog)
    source = record(TP, 0)
    ledger.track(source)
    item = work_item(source)
    exit_.answered(item, response_for(item))
    return exit_, counters, ledger, publisher, batches


async def test_a_state_record_refused_for_good_leaves_the_answer_standing():
    """The response acknowledged and the session's record refused for good: the event is
    answered, not dead-lettered (it would have two results), and its offset completes."""
    exit_, counters, ledger, publisher, batches = _answered_with(_OneStateRecord())
    (response, acked), (state, refused) = batches.held
    assert (response.topic, state.topic) == ("out", "sessions")
    acked(None)
    refused(PublishRejected("sessions", MessageSizeTooLargeError()))
    await exit_.wait_for_dead_letters(5)
    assert publisher.sent == [] and counters.dead_lettered == 0 and counters.failed == 0
    assert counters.answered == 1 and counters.states_refused == 1
    assert ledger.pending({TP}) == 0


async def test_a_state_record_not_sent_while_stopping_leaves_the_offset_owed():
    """Not refused but cut off (the producer closed): the next owner answers the event again."""
    _, counters, ledger, publisher, batches = _answered_with(_OneStateRecord())
    (_, acked), (_, cut_off) = batches.held
    acked(None)
    cut_off(ProducerClosed())
    assert counters.answered == 0 and counters.states_refused == 0
    assert ledger.pending({TP}) == 1 and publisher.sent == []


class _BrokenStateLog:
    def deliveries(self, item):  # type: ignore[no-untyped-def]
        raise ValueError("state cannot be encoded")


async def test_an_answer_that_cannot_be_queued_is_dead_lettered_and_nothing_is_published():
    """A bug that keeps an answer from being queued (its state cannot be encoded) still ends
    the record: dead-lettered with stage processing, nothing published, the offset done."""
    exit_, counters, ledger, publisher, batches = _answered_with(_BrokenStateLog())
    await exit_.wait_for_dead_letters(5)
    assert batches.held == [] and exit_.in_flight == 0
    (dead,) = publisher.sent
    reason = reason_of(dead.headers)
    assert (reason["error.stage"], reason["error.type"]) == ("processing", "ValueError")
    assert ledger.pending({TP}) == 0 and counters.dead_lettered == 1
