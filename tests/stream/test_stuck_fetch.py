"""A stop while the member's fetch waits for a rebalance that does not end (the broker away):
the member gives that wait up after the fetch's own bound instead of waiting with it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.structs import TopicPartition

from stream.kafka.member import _FETCH_WAIT_S, StreamRunner
from stream.settings import load_settings

# What the member promises is its fetch bound; the rest is room for a loaded machine.
_STOP_BOUND_S = _FETCH_WAIT_S + 5.0


class RebalancingConsumer:
    """``getmany`` waits as aiokafka's does for the new assignment while the group rebalances
    (``wait_forever``), or returns nothing once its wait is over."""

    def __init__(self, wait_forever: bool) -> None:
        self.wait_forever = wait_forever
        self.fetches = 0

    def assignment(self) -> set[TopicPartition]:
        return set()

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        if self.wait_forever:
            await asyncio.Event().wait()
        await asyncio.sleep(timeout_ms / 1000)
        return {}


class Idle:
    buffered = 0
    in_flight = 0

    def apply(self, buffered: int) -> None:
        pass


def consuming_runner(consumer: RebalancingConsumer) -> StreamRunner:
    runner = StreamRunner(load_settings(), lambda sink: Idle())  # type: ignore[arg-type,return-value]
    runner._consumer = consumer  # type: ignore[assignment]
    runner._backpressure = runner.engine = runner._sink = Idle()  # type: ignore[assignment]
    runner._membership = Idle()  # type: ignore[assignment]  # no records: never asked
    runner.commit = _no_commit  # type: ignore[method-assign]
    return runner


async def _no_commit(*_: Any, **__: Any) -> None:
    pass


async def test_a_stop_gives_up_a_fetch_waiting_for_a_rebalance_that_does_not_end():
    runner = consuming_runner(RebalancingConsumer(wait_forever=True))
    stop = asyncio.Event()
    consuming = asyncio.create_task(runner._consume_until(stop))
    await asyncio.sleep(0.05)
    assert not consuming.done()  # waiting in the fetch
    stop.set()
    done, _ = await asyncio.wait({consuming}, timeout=_STOP_BOUND_S)
    assert consuming in done, f"still fetching {_STOP_BOUND_S} s after the stop"
    assert consuming.result() is None  # it returned: the stop's next steps run uncancelled
    assert consuming.cancelling() == 0


async def test_a_stop_between_fetches_cancels_nothing_later():
    """The stop is seen between two fetches; the loop ends, and nothing cancels the task
    afterwards, when it goes on with the rest of the stop."""
    consumer = RebalancingConsumer(wait_forever=False)
    runner = consuming_runner(consumer)
    stop = asyncio.Event()

    async def consume_then_go_on() -> str:
        await runner._consume_until(stop)
        await asyncio.sleep(_FETCH_WAIT_S * 3)  # past the moment a stuck fetch is given up
        return "went on"

    consuming = asyncio.create_task(consume_then_go_on())
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(consuming, _STOP_BOUND_S + _FETCH_WAIT_S * 3) == "went on"
    assert consumer.fetches >= 1
