"""How a bot talks to chatstream: ``BotClient``. Also used by send, demo and bench.

A bot publishes each chat event to the inbound topic keyed by its ``channel_id`` (one
conversation, one partition, so it stays in order), with the W3C trace context of a producer
span in the headers: a child of the bot's current span when it has one, so chatstream's
processing joins the bot's trace. With a ``bot_id`` the client also reads what comes back for
that bot (``stream.botkit.replies``): ``ask`` sends and awaits the reply, ``send`` and
``reply_to`` do it in two steps, ``responses`` streams them. ``TopicWatcher`` reads everything
on the response and dead-letter topics, for the demo and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata

from schemas.codec import decode_event
from stream.botkit.replies import DeadLettered, Replies, assign_all
from stream.kafka.config import common_client_config, producer_config
from stream.kafka.dead_letter import is_replay_marker
from stream.observability.tracing import bot_publish_span
from stream.settings import Settings

__all__ = ["BotClient", "DeadLettered", "Sent", "TopicWatcher", "chat_event"]


def chat_event(bot_id: str, channel_id: str, user_id: str, content: str, *,
               event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A new inbound event: a fresh ``event_id`` unless given, the current time, and ``fields``
    (``priority``, ``message_type``, ``metadata``...) where not None."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "bot_id": bot_id,
        "channel_id": channel_id,
        "user_id": user_id,
        "content": content,
        "timestamp": datetime.now(UTC).isoformat(),
        **{k: v for k, v in fields.items() if v is not None},
    }


@dataclass(frozen=True, slots=True)
class Sent:
    """An event the broker acknowledged, and where it landed on the inbound topic."""

    event: dict[str, Any]
    partition: int
    offset: int

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


class BotClient:
    """Publishes inbound events keyed by channel_id, with the bot's trace context in headers;
    with ``bot_id``, also awaits and streams that bot's responses.

    ``send`` and ``ask`` check the event against this client's input limits first and raise
    ``schemas.DecodeError`` naming the problem instead of publishing a record chatstream would
    dead-letter. ``reply_to`` and ``ask`` raise ``DeadLettered`` when chatstream could not
    answer, ``TimeoutError`` when no answer came in time.
    """

    def __init__(self, settings: Settings, client_id: str = "chatstream-bot", *,
                 bot_id: str | None = None, dead_letters: bool = True) -> None:
        self._settings = settings
        self.bot_id = bot_id
        self._producer = AIOKafkaProducer(**producer_config(settings, client_id))
        self._replies = (Replies(settings, bot_id, dead_letters=dead_letters,
                                 client_id=f"{client_id}-replies") if bot_id else None)

    async def __aenter__(self) -> BotClient:
        # Replies first: positioned at the end before the first publish, no reply is missed.
        # The producer, made in __init__, holds a client even unstarted: stopped on any failure.
        try:
            if self._replies is not None:
                await self._replies.start()
        except BaseException:
            await self._producer.stop()
            raise
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()
            if self._replies is not None:
                await self._replies.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self._producer.stop()
        finally:
            if self._replies is not None:
                await self._replies.stop()

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
        """Send arbitrary bytes (for dead-letter demonstrations and tests). A record with
        neither key nor value, which other clients can write and ``AIOKafkaProducer.send``
        refuses, goes out as a batch of its own to the inbound topic's first partition."""
        topic = self._settings.inbound_topic
        if key is None and value is None:
            batch = self._producer.create_batch()
            batch.append(key=None, value=None, timestamp=None)
            return await self._producer.send_batch(batch, topic, partition=0)  # type: ignore[no-any-return]
        return await self._producer.send(topic, value=value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()

    async def send(self, channel_id: str, user_id: str, content: str, **fields: Any) -> Sent:
        """Publish one event of this bot (``fields`` as for ``chat_event``); wait for the ack."""
        event = chat_event(self._own_bot_id(), channel_id, user_id, content, **fields)
        decode_event(orjson.dumps(event), self._settings.input_limits)
        metadata = await (await self.publish(event))
        return Sent(event, metadata.partition, metadata.offset)

    async def reply_to(self, sent: Sent, timeout_s: float = 30.0) -> dict[str, Any]:
        """The response to an event ``send`` published."""
        return await self._reader().wait_for(sent.event_id, timeout_s,
                                             source=(sent.partition, sent.offset))

    async def ask(self, channel_id: str, user_id: str, content: str, *,
                  timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send one event and return its response."""
        return await self.reply_to(await self.send(channel_id, user_id, content, **fields),
                                   timeout_s)

    def responses(self) -> AsyncIterator[dict[str, Any]]:
        """Every response to this bot's events, as they arrive, from the first iteration on."""
        return self._reader().stream()

    def _own_bot_id(self) -> str:
        if not self.bot_id:
            raise ValueError("BotClient(settings, bot_id=...) is needed to send as a bot")
        return self.bot_id

    def _reader(self) -> Replies:
        if self._replies is None:
            raise ValueError("BotClient(settings, bot_id=...) reads that bot's responses")
        return self._replies


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
        try:
            # From the end, this may land a little before it on brokers with a lax end offset;
            # the reader filters by event id, so earlier records do no harm.
            await assign_all(self._consumer,
                             (self._settings.response_topic, self._settings.dlq_topic),
                             from_end=self._from_end)
        except BaseException:
            await self._consumer.stop()
            raise
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
            if is_replay_marker(record.headers or ()):
                return  # bookkeeping of `chatstream dlq replay`, not a dead letter
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
