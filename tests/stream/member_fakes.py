"""In-memory stand-ins for the Kafka clients the member's parts talk to (``GroupConsumer``,
``Publishes``), so commits, hand-overs, readiness and outcomes are tested without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from schemas.events import ChatEvent
from stream.devtools.bots import event_for
from stream.engine.work import admit
from stream.kafka.records import Delivery, RecordSource
from stream.settings import SessionScope


class FakeConsumer:
    """Records commits and pauses; ``fail_commits`` makes the next commits raise; ``frozen``
    makes metadata requests hang until ``thaw``."""

    def __init__(self, partitions: set[TopicPartition] | None = None) -> None:
        self.partitions = set(partitions or ())
        self.paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commits = 0
        self.highwaters: dict[TopicPartition, int] = {}
        self._thawed = asyncio.Event()
        self._thawed.set()
        self.topic_error: Exception | None = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaError("rebalance in progress")
        self.commits.append(dict(offsets))

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters.get(partition)

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    async def topics(self) -> Any:
        await self._thawed.wait()
        if self.topic_error is not None:
            raise self.topic_error
        return {"in"}


class FakePublisher:
    """Acknowledges every delivery, or raises what ``errors`` holds for its topic (once each)."""

    def __init__(self) -> None:
        self.sent: list[Delivery] = []
        self.errors: dict[str, list[BaseException]] = {}
        self.gate: asyncio.Event | None = None

    async def publish_all(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self.publish(delivery)

    async def publish(self, delivery: Delivery) -> None:
        if self.gate is not None:
            await self.gate.wait()
        queued = self.errors.get(delivery.topic)
        if queued:
            raise queued.pop(0)
        self.sent.append(delivery)


def record(tp: TopicPartition, offset: int, content: str = "hello") -> RecordSource:
    return RecordSource(tp=tp, offset=offset, key=b"c", value=content.encode())


def work_item(source: RecordSource, content: str = "hello"):  # type: ignore[no-untyped-def]
    event = ChatEvent.model_validate(event_for("b", "c", "u", content))
    return admit(event, SessionScope.USER, 0.0, source=source)
