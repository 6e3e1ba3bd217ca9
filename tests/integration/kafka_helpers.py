"""Helpers for tests against the real broker: run chatstream in-process, publish, collect."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream.app.wiring import build_engine
from stream.botkit.client import BotClient, TopicWatcher
from stream.devtools.bots import chat_events
from stream.kafka.dead_letter import is_replay_marker
from stream.kafka.member import EngineFactory, StreamRunner
from stream.kafka.topics import ensure_topics
from stream.ops.topic_read import TopicReader
from stream.settings import Settings


@contextlib.asynccontextmanager
async def running_chatstream(settings: Settings, ready_timeout_s: float = 30.0,
                             engine_factory: EngineFactory | None = None,
                             ) -> AsyncIterator[StreamRunner]:
    """A chatstream group member in this event loop; stopped gracefully on exit."""
    await ensure_topics(settings)
    stop = asyncio.Event()
    runner = StreamRunner(settings, engine_factory or (
        lambda sink: build_engine(settings, sink)))
    task = asyncio.create_task(runner.run(stop))
    ready = asyncio.create_task(runner.ready.wait())
    await asyncio.wait({task, ready}, timeout=ready_timeout_s,
                       return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what made it stop
    if not ready.done():
        ready.cancel()
        stop.set()
        await task
        raise TimeoutError("chatstream did not get partitions assigned in time")
    try:
        yield runner
    finally:
        stop.set()
        await task


async def publish_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    async with BotClient(settings) as client:
        acks = [await client.publish(event) for event in events]
        await asyncio.gather(*acks)


def simulated(count: int, seed: int = 1, **world: Any) -> list[dict[str, Any]]:
    return list(chat_events(seed=seed, count=count, **world))


@dataclass
class Outputs:
    """The response and dead-letter topics as read to their ends, each partition in offset
    order: responses by ``in_reply_to`` too, replay markers left out of the dead letters."""

    responses: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    response_order: list[dict[str, Any]] = field(default_factory=list)
    response_records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)


async def collect(settings: Settings, expected_responses: int, expected_dead_letters: int = 0,
                  timeout_s: float = 60.0) -> Outputs:
    """Everything chatstream wrote for the inbound records published so far, duplicates
    included: wait until the expected counts arrived, then until the group committed every
    inbound record, then read both output topics to their ends.

    A member commits an offset only once the response or dead letter of its record (and of
    every record before it) is acknowledged, so after that commit nothing more comes for
    those records unless one is processed again: the read is exact, with no wait for
    stragglers. Raises ``AssertionError`` when the counts or the commit are not there in
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    async with TopicWatcher(settings) as watcher:
        arrived = await watcher.wait_until(
            lambda: len(watcher.response_order) >= expected_responses
            and len(watcher.dead_letters) >= expected_dead_letters, timeout_s)
        assert arrived, (f"{len(watcher.response_order)}/{expected_responses} responses and "
                         f"{len(watcher.dead_letters)}/{expected_dead_letters} dead letters "
                         f"within {timeout_s} s")
    await until_committed(settings, deadline)
    outputs = Outputs()
    for record in await read_to_end(settings, settings.response_topic):
        response = orjson.loads(record.value) if record.value else {}
        outputs.responses[response.get("in_reply_to", "")].append(response)
        outputs.response_order.append(response)
        outputs.response_records.append(record)
    outputs.dead_letters = [record for record in await read_to_end(settings, settings.dlq_topic)
                            if not is_replay_marker(record.headers or ())]
    return outputs


async def read_to_end(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record ``topic`` holds now (``TopicReader``: up to the watermarks of a fetch
    made after the call). What was acknowledged before the call is in it, and nothing
    acknowledged later: the read is exact, with no wait for stragglers."""
    return (await _read_pass(settings, topic))[0]


async def _read_pass(settings: Settings, topic: str
                     ) -> tuple[list[ConsumerRecord[bytes, bytes]], dict[int, int]]:
    reader = TopicReader(settings, topic, idle_timeout_s=15.0, deadline_s=30.0,
                         client_id="test-reader")
    records = [record async for record in reader.records()]
    assert reader.complete, f"{topic} was not read to its end"
    return records, reader.watermarks


async def until_committed(settings: Settings, deadline: float) -> None:
    """Wait until the group's committed offset of each inbound partition reaches the
    partition's end as it is now."""
    _, watermarks = await _read_pass(settings, settings.inbound_topic)
    ends = {partition: end for partition, end in watermarks.items() if end > 0}
    partitions = [TopicPartition(settings.inbound_topic, p) for p in ends]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                                client_id="test-commit-fence")
    await admin.start()
    committed: dict[int, int] = {}
    try:
        while True:
            offsets = await admin.list_consumer_group_offsets(settings.group_id,
                                                              partitions=partitions)
            committed = {tp.partition: meta.offset for tp, meta in offsets.items()}
            if all(committed.get(p, -1) >= end for p, end in ends.items()):
                return
            assert time.monotonic() < deadline, (
                f"the group did not commit every inbound record: committed {committed}, "
                f"ends {ends}")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


def by_session(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """Event ids of each (bot, channel, user) session in publish order."""
    sessions: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for event in events:
        sessions[(event["bot_id"], event["channel_id"], event["user_id"])].append(event["event_id"])
    return sessions
