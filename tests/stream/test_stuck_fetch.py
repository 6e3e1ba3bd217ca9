"""A stop while the member's fetch waits for a rebalance that does not end (the broker away):
the member gives that fetch up once it has run twice its own wait, instead of waiting with it.
A stand-in consumer holds the fetch: the embedded broker cannot be kept in a rebalance on
demand."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream.devtools.bots import event_for
from stream.kafka.member import _FETCH_WAIT_S, _STUCK_FETCH_S, StreamRunner
from stream.settings import load_settings

# What the member promises is the give-up time; the rest is room for a loaded machine.
_STOP_BOUND_S = _STUCK_FETCH_S + 5.0
FIRST, SECOND = TopicPartition("in", 0), TopicPartition("in", 1)


class StandInConsumer:
    """``getmany`` of all partitions returns ``first`` after ``wait_s``; asked for one
    partition, it waits for ever, as aiokafka's does for the new assignment while the group
    rebalances (``None`` for ``wait_s``: the first call waits for ever too)."""

    def __init__(self, wait_s: float | None, first: dict[TopicPartition, list[Any]] | None = None,
                 partitions: set[TopicPartition] | None = None) -> None:
        self.wait_s = wait_s
        self.first = first or {}
        self.partitions = partitions or set()
        self.returned = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        if self.wait_s is None or partitions:
            await asyncio.Event().wait()
        await asyncio.sleep(self.wait_s)
        self.returned += 1
        return self.first


class Idle:
    buffered = 0
    in_flight = 0
    handovers = 0

    def apply(self, buffered: int) -> None:
        pass


def consuming_runner(consumer: StandInConsumer) -> StreamRunner:
    runner = StreamRunner(load_settings(), lambda sink: Idle())  # type: ignore[arg-type,return-value]
    runner._consumer = consumer  # type: ignore[assignment]
    runner._backpressure = runner.engine = runner._sink = Idle()  # type: ignore[assignment]
    runner._membership = Idle()  # type: ignore[assignment]
    runner.commit = _no_commit  # type: ignore[method-assign]
    return runner


async def _no_commit(*_: Any, **__: Any) -> None:
    pass


async def _stopped_while_fetching(consumer: StandInConsumer) -> tuple[StreamRunner,
                                                                      asyncio.Task[None]]:
    runner = consuming_runner(consumer)
    stop = asyncio.Event()
    consuming = asyncio.create_task(runner._consume_until(stop))
    await asyncio.sleep(0.05)
    assert not consuming.done()  # inside the fetch
    stop.set()
    await asyncio.wait({consuming}, timeout=_STOP_BOUND_S)
    assert consuming.done(), f"still fetching {_STOP_BOUND_S} s after the stop"
    return runner, consuming


async def test_a_stop_gives_up_a_fetch_waiting_for_a_rebalance_that_does_not_end():
    _, consuming = await _stopped_while_fetching(StandInConsumer(wait_s=None))
    assert consuming.result() is None  # it returned: the stop's next steps run uncancelled
    assert consuming.cancelling() == 0


async def test_records_of_a_fetch_given_up_are_left_to_the_next_owner():
    """The first call of the round returned records, the next one waits for the rebalance:
    those records are never tracked, so no commit moves past them."""
    value = orjson.dumps(event_for("b", "c", "u", "hi"))
    records = [ConsumerRecord("in", 0, offset, 0, 0, b"c", value, None, 1, 1, [])
               for offset in range(3)]
    runner, consuming = await _stopped_while_fetching(StandInConsumer(
        wait_s=0.0, first={FIRST: records}, partitions={FIRST, SECOND}))
    assert consuming.result() is None
    assert runner.ledger.partitions() == ()
    assert runner.ledger.offsets.commit_points() == {}


async def test_a_slow_fetch_within_twice_its_wait_is_not_given_up():
    """On a loaded machine a fetch may overrun its wait a little; a stop lets it return."""
    consumer = StandInConsumer(wait_s=_FETCH_WAIT_S * 1.5)
    runner = consuming_runner(consumer)
    stop = asyncio.Event()

    async def consume_then_go_on() -> str:
        await runner._consume_until(stop)
        await asyncio.sleep(_STUCK_FETCH_S * 2)  # past any moment a fetch could be given up
        return "went on"

    consuming = asyncio.create_task(consume_then_go_on())
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(consuming, _STOP_BOUND_S + _STUCK_FETCH_S * 2) == "went on"
    assert consumer.returned == 1


async def test_a_cancellation_from_outside_still_cancels_a_stuck_fetch():
    runner = consuming_runner(StandInConsumer(wait_s=None))
    consuming = asyncio.create_task(runner._consume_until(asyncio.Event()))
    await asyncio.sleep(0.05)
    consuming.cancel()
    await asyncio.wait({consuming}, timeout=_STOP_BOUND_S)
    assert consuming.cancelled()
