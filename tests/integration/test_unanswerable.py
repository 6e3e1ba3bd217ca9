"""Events that decode but cannot be answered are dead-lettered, and their partition moves on.

Every record must end answered or dead-lettered: one that stays pending would hold its
partition's commits back forever (and be re-processed by every later owner).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition
from kafka_helpers import collect, publish_events, running_chatstream

from processors.base import ExecutionKind, Stage
from processors.reply import ReplyProcessor
from schemas.context import ProcessorContext, SessionUpdate
from stream.app.wiring import build_engine
from stream.botkit.client import BotClient, TopicWatcher
from stream.engine.concurrent import ConcurrentConversationManager
from stream.engine.sink import Sink
from stream.kafka.dead_letter import reason_of
from stream.kafka.member import StreamRunner
from stream.settings import Settings

pytestmark = pytest.mark.kafka


def event(event_id: str, content: str) -> dict[str, Any]:
    return {"event_id": event_id, "bot_id": "b", "channel_id": "c", "user_id": "u",
            "content": content}


class Bloater:
    """Composes a 2 MB reply for content containing "bloat": more than a producer request holds."""

    name, kind, stage, timeout_s = "bloater", ExecutionKind.ASYNC, Stage.COMPOSE, 5.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"reply": "z" * 2_000_000} if "bloat" in context.event.content else {}


class ExplodingPipeline:
    """A pipeline that raises for content containing "explode" (as a broken engine would)."""

    async def run(self, context: ProcessorContext) -> Any:
        if "explode" in context.event.content:
            raise RuntimeError("engine bug for this event")
        return "ok", {}, []

    def session_update(self, outcomes: Any) -> SessionUpdate:
        return SessionUpdate()

    def stats(self) -> dict[str, Any]:
        return {}

    def pool_usage(self) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        return None


def answered(watcher: TopicWatcher) -> list[str]:
    return sorted(response["in_reply_to"] for response in watcher.response_order)


async def committed_through(runner: StreamRunner, tp: TopicPartition, offset: int,
                            timeout_s: float = 20.0) -> int | None:
    """Wait until the runner committed ``offset`` for ``tp``; return what it committed."""
    async with asyncio.timeout(timeout_s):
        while (runner.offsets.committed(tp) or -1) < offset:
            await asyncio.sleep(0.05)
    return runner.offsets.committed(tp)


async def test_rejected_response_is_dead_lettered_and_the_partition_commits(settings_for):
    """A response the broker can never take (too large) does not block: the event goes to the
    DLQ with stage "publish", the events after it are answered, and all offsets commit."""
    settings = settings_for(partitions=1)

    def engine(sink: Sink) -> Any:
        return build_engine(settings, sink, processors=[ReplyProcessor(), Bloater()])

    events = [event(f"e{i}", "please bloat" if i == 3 else f"hello {i}") for i in range(8)]
    async with running_chatstream(settings, engine_factory=engine) as runner:
        await publish_events(settings, events)
        watcher = await collect(settings, expected_responses=7, expected_dead_letters=1)
        committed = await committed_through(runner, TopicPartition(settings.inbound_topic, 0), 8)
        failed = runner.counters.failed
    assert committed == 8
    assert failed == 1
    assert answered(watcher) == [f"e{i}" for i in range(8) if i != 3]
    (dead,) = watcher.dead_letters
    reason = reason_of(dead.headers)
    assert reason["error.stage"] == "publish"
    assert reason["error.type"] == "MessageSizeTooLargeError"
    assert orjson.loads(dead.value)["event_id"] == "e3"
    assert reason["source.offset"] == "3"


async def test_event_the_engine_fails_is_dead_lettered_with_stage_processing(settings_for):
    """An engine raising for an event dead-letters it with stage "processing" and its error;
    the other events are answered and every offset commits."""
    settings = settings_for(partitions=1)

    def engine(sink: Sink) -> Any:
        return ConcurrentConversationManager(settings, ExplodingPipeline(), sink=sink)

    events = [event(f"e{i}", "explode" if i in (1, 4) else "hi") for i in range(6)]
    async with running_chatstream(settings, engine_factory=engine) as runner:
        await publish_events(settings, events)
        watcher = await collect(settings, expected_responses=4, expected_dead_letters=2)
        committed = await committed_through(runner, TopicPartition(settings.inbound_topic, 0), 6)
    assert committed == 6
    assert answered(watcher) == ["e0", "e2", "e3", "e5"]
    reasons = sorted((reason_of(d.headers)["source.offset"], reason_of(d.headers)["error.stage"],
                      reason_of(d.headers)["error.type"]) for d in watcher.dead_letters)
    assert reasons == [("1", "processing", "RuntimeError"), ("4", "processing", "RuntimeError")]


async def test_dead_letter_too_large_for_the_dlq_keeps_its_reason(settings_for):
    """A record too large to copy into the DLQ is dead-lettered without its bytes, with the
    reason and why the bytes were dropped; the partition still commits past it."""
    settings: Settings = settings_for(partitions=1)
    huge = orjson.dumps(event("huge", "x" * 1_500_000))
    async with running_chatstream(settings) as runner:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                    max_request_size=4_000_000)
        await producer.start()
        try:
            await (await producer.send(settings.inbound_topic, huge, key=b"c"))
        finally:
            await producer.stop()
        async with BotClient(settings) as client:
            await (await client.publish(event("after", "hello")))
        watcher = await collect(settings, expected_responses=1, expected_dead_letters=1)
        committed = await committed_through(runner, TopicPartition(settings.inbound_topic, 0), 2)
    assert committed == 2
    assert answered(watcher) == ["after"]
    (dead,) = watcher.dead_letters
    reason = reason_of(dead.headers)
    assert dead.value is None
    assert reason["error.stage"] == "size"
    assert "MessageSizeTooLargeError" in reason["value.dropped"]
