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

    async def publish(self, delivery: Delivery) -> None:
        if self.gate is not None:
            await self.gate.wait()
        # What AIOKafkaProducer.send asserts before anything else.
        assert not (delivery.key is None and delivery.value is None), \
            "Need at least one: key or value"
        queued = self.errors.get(delivery.topic)
        if queued:
            raise queued.pop(0)
        self.sent.append(delivery)


class FakeBatch:
    """``BatchBuilder``: takes up to ``capacity`` records, then reports itself full (None)."""

    def __init__(self, capacity: int) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.capacity = capacity
        self.closed = False

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: Any,
               headers: Any) -> object | None:
        if self.closed or len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True


class FakeBatchProducer:
    """``BatchProducer``: acknowledges each batch on the next loop iteration (or when ``gate``
    opens), or fails it with what ``failures`` holds for its topic (once each). ``batches``
    holds what was acknowledged, in order: (topic, partition, records)."""

    def __init__(self, partitions: int = 4, capacity: int = 1000,
                 landed: list[Delivery] | None = None) -> None:
        self.partitions = partitions
        self.landed = landed  # each acknowledged record, also appended here
        self.capacity = capacity
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.gate: asyncio.Event | None = None
        self.in_flight: dict[tuple[str, int], int] = {}
        self.most_in_flight = 0
        self._acks: set[asyncio.Task[None]] = set()

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int
                         ) -> asyncio.Future[None]:
        tp = (topic, partition)
        self.in_flight[tp] = self.in_flight.get(tp, 0) + 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight[tp])
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def acknowledge() -> None:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            self.in_flight[tp] -= 1
            queued = self.failures.get(topic)
            if queued:
                acked.set_exception(queued.pop(0))
                return
            self.batches.append((topic, partition, list(batch.records)))
            if self.landed is not None:
                self.landed += [Delivery(topic, k, v, partition=partition)
                                for k, v in batch.records]
            acked.set_result(None)

        task = asyncio.ensure_future(acknowledge())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
        return acked

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def records(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        return [r for t, _, records in self.batches if t == topic for r in records]


def record(tp: TopicPartition, offset: int, content: str = "hello") -> RecordSource:
    return RecordSource(tp=tp, offset=offset, key=b"c", value=content.encode())


def work_item(source: RecordSource, content: str = "hello"):  # type: ignore[no-untyped-def]
    event = ChatEvent.model_validate(event_for("b", "c", "u", content))
    return admit(event, SessionScope.USER, 0.0, source=source)
