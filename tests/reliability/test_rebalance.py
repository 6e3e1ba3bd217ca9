"""Rebalance: scaling a group 1 -> 2 -> 1 under load hands partitions over without loss,
reordering or duplicates."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from workers import OutputReader, Worker, analyse, produce, settle, until

from stream.devtools.bots import chat_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

EVENTS = 1800
RATE = 100.0
SCALE_UP_AT = 200  # events sent when the second worker starts
# Events sent when it is stopped (SIGTERM), once it has answered some. From its start to the
# end of the load it has 16 s to start, join (the embedded broker holds a JoinGroup about
# 2 s), be handed its partitions and answer once: several times what a loaded machine needs.
SCALE_DOWN_AT = 800


def _answered(log: str) -> int:
    found = re.findall(r"chatstream stopped: \d+ consumed, (\d+) answered", log)
    assert found, "the worker did not log its final counters"
    return int(found[-1])


async def _has_answered(worker: Worker) -> bool:
    """The worker is up and has answered at least one event (polled, never waited for: the
    load goes on meanwhile, so a member that joins late still gets events)."""
    stats = await worker.stats()
    kafka = stats.get("kafka") if stats else None
    return bool(kafka and kafka["counters"]["answered"] > 0)


async def test_scale_up_and_down_under_load_is_lossless_and_exact(pool_factory):
    """A second member joining and later leaving (SIGTERM) during load: every event answered
    exactly once, each session in send order, and the second member really took part."""
    pool = await pool_factory(partitions=8)
    settings = pool.settings
    first = pool.spawn("first")
    await first.wait_ready()
    second = None
    stopped: asyncio.Task[tuple[int | None, float]] | None = None

    async def scale(sent_so_far: int) -> None:
        nonlocal second, stopped
        if sent_so_far == SCALE_UP_AT:
            second = pool.spawn("second")
        if sent_so_far >= SCALE_DOWN_AT and stopped is None and second is not None \
                and await _has_answered(second):
            stopped = asyncio.create_task(second.terminate(timeout_s=20))

    started = time.monotonic()
    async with OutputReader(settings) as reader:
        sent = await produce(settings, chat_events(seed=202, count=EVENTS, channels=40),
                             rate=RATE, on_progress=scale)
        assert stopped is not None, "the second member answered nothing during the load"
        code, stop_s = await stopped
        expected = {event["event_id"] for event in sent.events}
        await until(lambda: expected <= reader.answered_ids(), 60,
                    f"every event answered\n{pool.logs()}")
        await settle(settings, reader, sent)
        figures = analyse(sent, reader)
    assert second is not None
    second_answered = _answered(second.log_text())
    print(f"\n[rebalance] 1 -> 2 -> 1 members: {figures.line()}; second member answered "
          f"{second_answered}, stopped in {stop_s:.2f} s (exit {code}); "
          f"{time.monotonic() - started:.1f} s")
    assert code == 0
    assert figures.lost == []
    assert figures.duplicates == 0, f"duplicated: {figures.duplicated_ids[:10]}"
    assert figures.order_violations == 0
    assert 0 < second_answered < EVENTS
    assert first.alive(), first.log_tail()
