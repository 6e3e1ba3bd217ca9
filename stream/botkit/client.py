"""What a bot does: publish chat events and read the responses. Used by send, demo and bench."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition

from stream.kafka.config import common_client_config, producer_config
from stream.observability.tracing import bot_publish_span
from stream.settings import Settings


class BotClient:
    """Publishes inbound events keyed by channel_id, with the bot's trace context in headers."""

    def __init__(self, settings: Settings, client_id: str = "chatstream-bot") -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(**producer_config(settings, client_id))

    async def __aenter__(self) -> BotClient:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._producer.stop()

    async def publish(self, event: dict[str, Any]) -> asyncio.Future[RecordMetadata]:
        """Queue one event for sending; the returned future resolves when the broker acks it."""
        with bot_publish_span(self._settings.inbound_topic, event) as headers:
            return await self._producer.send(
                self._settings.inbound_topic,
                value=orjson.dumps(event),
                key=str(event.get("channel_id", "")).encode(),
                headers=headers,
            )

    async def publish_raw(self, value: bytes | None, key: bytes | None = None
                          ) -> asyncio.Future[RecordMetadata]:
        """Send arbitrary bytes (for dead-letter demonstrations and tests)."""
        return await self._producer.send(self._settings.inbound_topic, value=value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()


Listener = Callable[[str, ConsumerRecord[bytes, bytes]], None]


class TopicWatcher:
    """Reads the response and dead-letter topics (no consumer group) and indexes what it sees.

    Responses are indexed by ``in_reply_to``; dead letters by their source offset headers.
    With ``from_end`` it starts near the end of each partition, so it sees only new records.
    """

    def __init__(self, settings: Settings, *, from_end: bool = False,
                 listener: Listener | None = None) -> None:
        self._settings = settings
        self._from_end = from_end
        self._listener = listener
        self._consumer = AIOKafkaConsumer(
            **common_client_config(settings, "chatstream-watcher"),
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        self.responses: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.response_order: list[dict[str, Any]] = []
        self.response_records: list[ConsumerRecord[bytes, bytes]] = []
        self.dead_letters: list[ConsumerRecord[bytes, bytes]] = []
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicWatcher:
        await self._consumer.start()
        topics = (self._settings.response_topic, self._settings.dlq_topic)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await self._consumer.stop()
            raise RuntimeError(f"topics {topics} not found: run 'chatstream topics ensure'")
        self._consumer.assign(partitions)
        if self._from_end:
            # This may land a little before the true end on brokers with a lax end offset;
            # the reader filters by event id, so earlier records do no harm.
            await self._consumer.seek_to_end(*partitions)
        self._task = asyncio.create_task(self._read_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read_forever(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    self._take(tp.topic, record)

    def _take(self, topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
        if topic == self._settings.dlq_topic:
            self.dead_letters.append(record)
        else:
            response = orjson.loads(record.value) if record.value else {}
            event_id = response.get("in_reply_to", "")
            self.responses[event_id].append(response)
            self.response_order.append(response)
            self.response_records.append(record)
            waiter = self._waiters.pop(event_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(response)
        if self._listener is not None:
            self._listener(topic, record)

    async def wait_for(self, event_id: str, timeout_s: float) -> dict[str, Any]:
        """The first response to ``event_id``; raises TimeoutError if none comes in time."""
        if self.responses.get(event_id):
            return self.responses[event_id][0]
        waiter = self._waiters.setdefault(event_id, asyncio.get_running_loop().create_future())
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(waiter)

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Poll ``condition`` after each fetch until it holds; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    await asyncio.sleep(0.05)
            return True
        except TimeoutError:
            return False
