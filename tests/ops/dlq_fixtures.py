"""Dead letters written straight to a test's dead-letter topic, in the format chatstream uses,
and a bounded read of any topic to check what a replay published."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream.kafka.dead_letter import FailureReason, dead_letter, without_value
from stream.kafka.records import RecordSource
from stream.settings import Settings

TRACEPARENT = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Letter:
    """One dead letter to write: the original record and why it failed."""

    key: bytes
    value: bytes | None
    stage: str
    error_type: str
    partition: int = 0
    age_ms: int = 0  # how long ago it was dead-lettered
    dropped: bool = False
    source_offset: int = 0


async def write_letters(settings: Settings, letters: list[Letter]) -> None:
    """Produce ``letters`` to the DLQ topic, each to its partition, and wait for the acks."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        acks = []
        for letter in letters:
            source = RecordSource(TopicPartition(settings.inbound_topic, letter.partition),
                                  letter.source_offset, letter.key, (TRACEPARENT,),
                                  value=letter.value)
            delivery = dead_letter(settings.dlq_topic, source, letter.value,
                                   FailureReason(letter.stage, letter.error_type,
                                                 f"{letter.error_type} in {letter.key.decode()}"))
            if letter.dropped:
                delivery = without_value(delivery, "MessageSizeTooLargeError")
            acks.append(await producer.send(
                delivery.topic, value=delivery.value, key=delivery.key,
                headers=delivery.headers, partition=letter.partition,
                timestamp_ms=now_ms - letter.age_ms))
        await asyncio.wait_for(asyncio.gather(*acks), 30)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 15.0,
                     linger_s: float = 1.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``: until ``expected`` arrived, then ``linger_s`` more to catch
    extras; at most ``timeout_s``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=10)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p)
                         for p in sorted(consumer.partitions_for_topic(topic) or ())])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        enough_at: float | None = None
        while loop.time() < deadline and (enough_at is None or loop.time() < enough_at):
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
            if enough_at is None and len(records) >= expected:
                enough_at = loop.time() + linger_s
    finally:
        await consumer.stop()
    return records
