"""A bot's view of what chatstream sends back: the responses to one bot id as they arrive, and
the dead letters of its events.

``Replies`` reads every partition of the response topic (and of the dead-letter topic, unless
told not to) without a consumer group, starting at their ends, and is positioned there before
``start`` returns: whatever a bot publishes after that is seen. On the embedded broker the end
lands a little early, so a few older records may be read too; they are filtered by bot id and
matter only to ``stream``. Memory is bounded: the last ``remember`` responses stay indexed by
event id (for a ``wait_for`` called after its response came), and each ``stream`` buffers at
most ``buffer`` responses; a stream that falls behind holds the reading back, it loses nothing.

``wait_for`` raises ``DeadLettered`` as soon as the event is dead-lettered (when its
partition and offset are given), ``TimeoutError`` when nothing comes in time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from cachetools import LRUCache

from stream.kafka.config import common_client_config
from stream.kafka.dead_letter import is_replay_marker, reason_of
from stream.settings import Settings

Source = tuple[int, int]  # (partition, offset) of an event on the inbound topic
_FAILED: dict[str, Any] = {}  # wakes a stream when the reading stopped on an error


class DeadLettered(Exception):
    """chatstream could not answer the event and dead-lettered it; ``reason`` says why."""

    def __init__(self, event_id: str, reason: dict[str, str]) -> None:
        self.event_id = event_id
        self.reason = reason
        super().__init__(f"event {event_id} was dead-lettered at stage "
                         f"{reason.get('error.stage', '?')}: {reason.get('error.type', '?')}: "
                         f"{reason.get('error.message', '')}")


async def assign_all(consumer: AIOKafkaConsumer, topics: Iterable[str], *, from_end: bool
                     ) -> list[TopicPartition]:
    """Assign every partition of ``topics`` (RuntimeError naming the missing ones) and, with
    ``from_end``, wait until each is positioned at its end."""
    partitions, missing = [], []
    for topic in topics:
        found = consumer.partitions_for_topic(topic)
        missing += [] if found else [topic]
        partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
    if missing:
        raise RuntimeError(f"topics {missing} not found: run 'chatstream topics ensure'")
    consumer.assign(partitions)
    if from_end:
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # the reset is lazy: resolve it before anyone publishes
    return partitions


class Replies:
    """The responses to ``bot_id``'s events (see the module docstring). Use ``start``/``stop``
    or ``async with``."""

    def __init__(self, settings: Settings, bot_id: str, *, dead_letters: bool = True,
                 remember: int = 1024, buffer: int = 1000,
                 client_id: str = "chatstream-bot-replies") -> None:
        self._settings = settings
        self.bot_id = bot_id
        self._topics = [settings.response_topic] + ([settings.dlq_topic] if dead_letters else [])
        self._consumer = AIOKafkaConsumer(
            **common_client_config(settings, client_id), group_id=None,
            enable_auto_commit=False, auto_offset_reset="latest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms)
        self._responses: LRUCache[str, dict[str, Any]] = LRUCache(remember)
        self._dead: LRUCache[Source, dict[str, str]] = LRUCache(remember)
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._watched: dict[Source, str] = {}
        self._streams: set[asyncio.Queue[dict[str, Any]]] = set()
        self._buffer = buffer
        self._task: asyncio.Task[None] | None = None
        self._failure: Exception | None = None

    async def start(self) -> None:
        try:  # a consumer that failed to start still holds its client: it is stopped too
            await self._consumer.start()
            await assign_all(self._consumer, self._topics, from_end=True)
        except BaseException:
            await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # an error that ended the reading was handed to every reader already
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()

    async def __aenter__(self) -> Replies:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _read(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for record in records:
                        if tp.topic == self._settings.response_topic:
                            await self._take_response(record)
                        else:
                            self._take_dead_letter(record)
        except Exception as exc:  # a fatal client error (authorisation, say): tell every reader
            self._failure = exc
            for waiter in (w for waiters in self._waiters.values() for w in waiters):
                if not waiter.done():
                    waiter.set_exception(exc)
            for queue in self._streams:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(_FAILED)
            raise

    async def _take_response(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            response = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            return  # not chatstream's; nothing a bot could do with it
        if not isinstance(response, dict) or response.get("bot_id") != self.bot_id:
            return
        event_id = str(response.get("in_reply_to", ""))
        self._responses[event_id] = response
        for waiter in self._waiters.get(event_id, ()):
            if not waiter.done():
                waiter.set_result(response)
        for queue in list(self._streams):
            await queue.put(response)

    def _take_dead_letter(self, record: ConsumerRecord[bytes, bytes]) -> None:
        reason = reason_of(record.headers or ())
        if is_replay_marker(record.headers or ()) or reason.get(
                "source.topic") != self._settings.inbound_topic:
            return
        try:
            source = (int(reason["source.partition"]), int(reason["source.offset"]))
        except (KeyError, ValueError):
            return
        self._dead[source] = reason
        event_id = self._watched.get(source)
        for waiter in self._waiters.get(event_id or "", ()):
            if not waiter.done():
                waiter.set_exception(DeadLettered(event_id or "", reason))

    async def wait_for(self, event_id: str, timeout_s: float, *, source: Source | None = None
                       ) -> dict[str, Any]:
        """The response to ``event_id``; ``DeadLettered`` if the event at ``source`` was
        dead-lettered; ``TimeoutError`` after ``timeout_s``."""
        if event_id in self._responses:
            return self._responses[event_id]
        if self._failure is not None:
            raise self._failure
        if source is not None and source in self._dead:
            raise DeadLettered(event_id, self._dead[source])
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event_id, []).append(waiter)
        if source is not None:
            self._watched[source] = event_id
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter
        finally:
            self._forget(event_id, waiter, source)

    def _forget(self, event_id: str, waiter: asyncio.Future[dict[str, Any]],
                source: Source | None) -> None:
        waiters = self._waiters.get(event_id, [])
        with contextlib.suppress(ValueError):
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(event_id, None)
            if source is not None:
                self._watched.pop(source, None)

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        """Every response to this bot that arrives from now on, in arrival order."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._buffer)
        self._streams.add(queue)
        try:
            while True:
                if self._failure is not None and queue.empty():
                    raise self._failure
                response = await queue.get()
                if response is not _FAILED:
                    yield response
        finally:
            self._streams.discard(queue)
