"""What travels with an event from the consumer to the publisher."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

Headers = list[tuple[str, bytes]]


@dataclass(slots=True, eq=False)  # not frozen: a frozen init costs a setattr call per field
class RecordSource:
    """Where an inbound event came from: needed to commit its offset, to continue its trace and
    to dead-letter its original bytes. Compared by identity: a record fetched again after a
    hand-over is a new source."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None
    value: bytes | None = None

    @classmethod
    def from_record(cls, record: Any) -> RecordSource:
        """Build from an aiokafka ConsumerRecord."""
        return cls(
            tp=_partition(record.topic, record.partition),
            offset=record.offset,
            key=record.key,
            headers=tuple(record.headers or ()),
            timestamp_ms=record.timestamp,
            value=record.value,
        )


@functools.lru_cache(maxsize=4096)
def _partition(topic: str, partition: int) -> TopicPartition:
    # One shared object per partition instead of a new tuple per record.
    return TopicPartition(topic, partition)


@dataclass(slots=True)
class Delivery:
    """A response (or dead letter) ready to publish."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    partition: int | None = None  # None: the producer's partitioner chooses, by key
