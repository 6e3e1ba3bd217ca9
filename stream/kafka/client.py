"""What the member needs of its Kafka consumer, as a protocol: aiokafka's consumer satisfies it,
and unit tests drive commits, hand-overs and readiness with a small in-memory fake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka.structs import TopicPartition

__all__ = ["GroupConsumer"]


class GroupConsumer(Protocol):
    def assignment(self) -> set[TopicPartition]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def topics(self) -> Any: ...
