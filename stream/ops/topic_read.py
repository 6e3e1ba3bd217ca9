"""Read a topic as it stands: every partition from its first offset up to the high watermark
seen on the first fetch, without a consumer group and without committing anything.

Bounded three ways: a partition is done at that watermark (records produced later are left
out, so a busy topic does not keep the read going); the read gives up after ``idle_timeout_s``
without a new record or at ``deadline_s`` overall, and then says it is not ``complete``.
The watermark is ``consumer.highwater(tp)`` after a fetch, not ``end_offsets()``: the embedded
broker answers the latter with the last batch's base offset + 1.

Raises ``TopicUnavailable`` (one line) when the brokers cannot be reached or the topic is
missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream.kafka.config import broker_failure, common_client_config
from stream.settings import Settings

_POLL_MS = 200
_CONNECT_TIMEOUT_S = 15.0


class TopicUnavailable(Exception):
    """The topic cannot be read: no broker answers, or it does not exist."""


class TopicReader:
    """One bounded pass over a topic; iterate ``records()`` once, then read ``complete``."""

    def __init__(self, settings: Settings, topic: str, *, idle_timeout_s: float = 5.0,
                 deadline_s: float = 120.0, client_id: str = "chatstream-ops") -> None:
        self._settings = settings
        self.topic = topic
        self._idle_timeout_s = idle_timeout_s
        self._deadline_s = deadline_s
        self._client_id = client_id
        self.complete = False
        self.watermarks: dict[int, int] = {}

    async def records(self) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """The topic's records, partition by partition in offset order within each."""
        consumer = AIOKafkaConsumer(
            **common_client_config(self._settings, self._client_id), group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
        )
        try:
            partitions = await self._assign(consumer)
            async for record in self._drain(consumer, partitions):
                yield record
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        servers = self._settings.kafka_bootstrap_servers
        try:
            await asyncio.wait_for(consumer.start(), _CONNECT_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            raise TopicUnavailable(broker_failure(self._settings, exc)) from None
        found = consumer.partitions_for_topic(self.topic)
        if not found:
            raise TopicUnavailable(f"topic {self.topic!r} not found at {servers} "
                                   "(check the topic setting, or run 'chatstream topics ensure')")
        partitions = [TopicPartition(self.topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return partitions

    async def _drain(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
                     ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline_s
        last_record = loop.time()
        pending = set(partitions)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
            self._note_watermarks(consumer, pending)
            for tp, batch in batches.items():
                limit = self.watermarks.get(tp.partition)
                for record in batch:
                    if limit is None or record.offset < limit:
                        last_record = loop.time()
                        yield record
            for tp in [tp for tp in pending if await self._reached(consumer, tp)]:
                consumer.pause(tp)  # later records are not part of this pass
                pending.discard(tp)
            now = loop.time()
            if pending and (now - last_record > self._idle_timeout_s or now > deadline):
                return
        self.complete = True

    def _note_watermarks(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
                         ) -> None:
        for tp in partitions:
            high = consumer.highwater(tp)
            if high is not None:
                self.watermarks.setdefault(tp.partition, high)

    async def _reached(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
        limit = self.watermarks.get(tp.partition)
        return limit is not None and await consumer.position(tp) >= limit
