"""Taking fetched records from every partition in turn.

aiokafka's ``getmany`` drains the partitions it holds records of one after another, up to
``max_records``: all it fetched of the first partition (a producer's batch alone can hold a
thousand records, and a fetch returns it whole) before any record of the next. A member whose
engine serves many sessions at once would then admit one partition's sessions at a time, and
on a backlog the rest would wait with work to do. ``take_in_turn`` asks each partition for at
most its share of ``max_records``, so one call takes a little of every partition that has
records, each partition's in offset order.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

__all__ = ["take_in_turn"]


async def take_in_turn(consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int
                       ) -> dict[TopicPartition, list[Any]]:
    """Records of the assigned partitions, at most ``max_records // partitions`` of each (at
    least one), so at most ``max_records`` unless the partitions outnumber it; waits up to
    ``timeout_ms`` only when none has any."""
    partitions = consumer.assignment()
    share = max(1, max_records // max(1, len(partitions)))
    taken: dict[TopicPartition, list[Any]] = await consumer.getmany(
        timeout_ms=timeout_ms, max_records=share)
    if taken:
        for tp in partitions:
            if tp not in taken:  # one call per partition: a second would overwrite its records
                taken.update(await consumer.getmany(tp, timeout_ms=0, max_records=share))
    return taken
