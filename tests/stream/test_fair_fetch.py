"""take_in_turn: a share of every partition's fetched records per call, each in order.

The consumer here is a stand-in that hands out buffered records the way aiokafka's ``getmany``
does (the first partition it holds records of first, up to ``max_records``); the real broker's
case is tests/integration/test_backlog_admission.py.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from stream.kafka.fair_fetch import Taken, take_in_turn


class BufferedConsumer:
    """Records already fetched, per partition, drained like aiokafka's ``getmany``."""

    def __init__(self, sizes: list[int]) -> None:
        self.buffered = {TopicPartition("t", p): deque(range(size))
                         for p, size in enumerate(sizes)}
        self.waits: list[int] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.buffered)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.waits.append(timeout_ms)
        taken: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 10**9
        for tp, records in self.buffered.items():
            if (partitions and tp not in partitions) or not records or budget == 0:
                continue
            taken[tp] = [records.popleft() for _ in range(min(budget, len(records)))]
            budget -= len(taken[tp])
        return taken


class JoiningConsumer(BufferedConsumer):
    """Assigned nothing until its first ``getmany`` returns, as a member that has not joined
    its group yet (aiokafka's first fetch waits for the assignment)."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__(sizes)
        self.joined = False

    def assignment(self) -> set[TopicPartition]:
        return super().assignment() if self.joined else set()

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        taken = await super().getmany(*partitions, timeout_ms=timeout_ms,
                                      max_records=max_records)
        self.joined = True
        return taken


def merged(taken: list[Taken]) -> dict[TopicPartition, list[Any]]:
    records: dict[TopicPartition, list[Any]] = {}
    for _, tp, fetched in taken:
        assert tp not in records, "a partition asked twice in one round"
        records[tp] = fetched
    return records


def never_handed_over() -> int:
    return 0


async def test_one_round_takes_a_share_of_every_partition():
    consumer = BufferedConsumer([100] * 8)
    taken = merged(await take_in_turn(consumer, 200, 80, never_handed_over))  # type: ignore[arg-type]
    assert {tp.partition: len(records) for tp, records in taken.items()} == {
        p: 10 for p in range(8)}
    assert consumer.waits[0] == 200 and set(consumer.waits[1:]) == {0}


async def test_the_round_before_the_first_assignment_takes_a_share_of_every_partition_too():
    """No partition's records are taken whole while the assignment is not known yet."""
    consumer = JoiningConsumer([100] * 8)
    taken = merged(await take_in_turn(consumer, 200, 80, never_handed_over))  # type: ignore[arg-type]
    assert max(len(records) for records in taken.values()) <= 10
    assert len(taken) == 8


async def test_nothing_buffered_waits_once_and_returns_nothing():
    consumer = BufferedConsumer([0, 0, 0])
    assert await take_in_turn(consumer, 200, 500, never_handed_over) == []  # type: ignore[arg-type]
    assert consumer.waits == [200]


async def test_each_call_carries_the_hand_overs_begun_when_it_returned():
    """A hand-over that begins between two calls marks the later call's records only."""
    consumer = BufferedConsumer([20, 20, 20])
    begun = iter(range(10))
    taken = await take_in_turn(consumer, 0, 30, lambda: next(begun))  # type: ignore[arg-type]
    assert [handovers for handovers, _, _ in taken] == [0, 1, 2]


@given(sizes=st.lists(st.integers(0, 60), min_size=1, max_size=12),
       max_records=st.integers(1, 100))
async def test_every_record_once_each_partition_in_order(sizes, max_records):
    """Calls until nothing is left give every partition's records once, in order, no call
    more than ``max_records`` (or one per partition, when they outnumber it)."""
    consumer = BufferedConsumer(sizes)
    seen: dict[int, list[int]] = {p: [] for p in range(len(sizes))}
    while taken := merged(await take_in_turn(consumer, 0, max_records,  # type: ignore[arg-type]
                                             never_handed_over)):
        assert sum(map(len, taken.values())) <= max(max_records, len(sizes))
        for tp, records in taken.items():
            seen[tp.partition] += records
    assert seen == {p: list(range(size)) for p, size in enumerate(sizes)}
