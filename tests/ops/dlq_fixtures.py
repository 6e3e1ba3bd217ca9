"""Dead letters written straight to a test's dead-letter topic, in the format chatstream uses."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

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
