"""Taking fetched records from every partition in turn.

aiokafka's ``getmany`` drains the partitions it holds records of one after another, up to
``max_records``: all it fetched of the first partition (a producer's batch alone can hold a
thousand records, and a fetch returns it whole) before any record of the next. A member whose
engine serves many sessions at once would then admit one partition's sessions at a time, and
on a backlog the rest would wait with work to do. ``take_in_turn`` asks each partition for at
most its share of ``max_records``, so one round takes a little of every partition that has
records, each partition's in offset order.

Any of those calls may wait while the group rebalances, and records already in hand of a
partition revoked meanwhile are no longer the member's. So each partition's records come with
the count of hand-overs begun when their call returned (``Taken``), for the member to leave
those of a partition handed over since then to the next owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

__all__ = ["Taken", "take_in_turn"]


class Taken(NamedTuple):
    """A partition's records as one ``getmany`` call returned them, and the hand-overs begun
    by then."""

    handovers: int
    partition: TopicPartition
    records: list[Any]


async def take_in_turn(consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int,
                       handovers: Callable[[], int]) -> list[Taken]:
    """Records of the assigned partitions, at most ``max_records // partitions`` of each (at
    least one; one from the first partition asked, before the group's first assignment), so at
    most ``max_records`` unless the partitions outnumber it; waits up to ``timeout_ms`` only
    when none has any. ``handovers`` counts the hand-overs begun."""
    assigned = len(consumer.assignment())
    # Before the group's first assignment nothing tells how many partitions will share the
    # round: the waiting call takes one record, the others their share once it is known.
    first = await consumer.getmany(timeout_ms=timeout_ms,
                                   max_records=_share(max_records, assigned) if assigned else 1)
    if not first:
        return []
    taken = _tagged(first, handovers())
    partitions = consumer.assignment()
    share = _share(max_records, len(partitions))
    for tp in partitions:
        if tp not in first:  # one call per partition, so each partition's records stay in order
            taken += _tagged(await consumer.getmany(tp, timeout_ms=0, max_records=share),
                             handovers())
    return taken


def _share(max_records: int, partitions: int) -> int:
    return max(1, max_records // max(1, partitions))


def _tagged(fetched: dict[TopicPartition, list[Any]], handovers: int) -> list[Taken]:
    return [Taken(handovers, tp, records) for tp, records in fetched.items()]
