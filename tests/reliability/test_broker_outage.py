"""Broker outage: a frozen broker (SIGSTOP for a few seconds, then SIGCONT) makes the worker
report not-ready, and the same worker answers everything once the broker is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest
from workers import STOP_MARGIN_S, OutputReader, analyse, produce, rate_capped, settle, until

from stream.devtools.bots import chat_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

EVENTS = 1400
RATE = 100.0
OUTAGE_AFTER_S = 4.0
OUTAGE_S = 6.0
NOT_READY_WITHIN_S = 8.0  # after the outage ends: the group rejoins within a few seconds


async def test_broker_freeze_flips_readiness_and_loses_nothing(pool_factory, module_broker):
    """SIGSTOP of the broker for 6 s under load: /readyz says not ready during or soon after
    the outage, and every event is answered afterwards by the same, never restarted worker."""
    pool = await pool_factory(partitions=8)
    settings = pool.settings
    worker = pool.spawn("survivor")
    await worker.wait_ready()
    pid_before = worker.pid
    readiness: list[tuple[float, bool | None]] = []
    window: dict[str, float] = {}

    async def watch_readiness() -> None:
        while True:
            readiness.append((time.monotonic(), await worker.ready()))
            await asyncio.sleep(0.1)

    async def outage() -> None:
        await asyncio.sleep(OUTAGE_AFTER_S)
        os.kill(module_broker.pid, signal.SIGSTOP)
        window["start"] = time.monotonic()
        try:
            await asyncio.sleep(OUTAGE_S)  # the fault itself lasts this long; nothing is asserted
        finally:
            os.kill(module_broker.pid, signal.SIGCONT)
            window["end"] = time.monotonic()

    watcher = asyncio.create_task(watch_readiness())
    freezer = asyncio.create_task(outage())
    try:
        async with OutputReader(settings) as reader:
            sent = await produce(settings, chat_events(seed=404, count=EVENTS, channels=40),
                                 rate=RATE)
            await freezer
            expected = {event["event_id"] for event in sent.events}
            recovered_s = await until(lambda: expected <= reader.answered_ids(), 60,
                                      f"every event answered\n{pool.logs()}")
            await settle(settings, reader, sent)
            figures = analyse(sent, reader)
    finally:
        if not freezer.done():
            freezer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await freezer
        os.kill(module_broker.pid, signal.SIGCONT)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    start, end = window["start"], window["end"]
    flips = [t for t, ready in readiness if ready is False and start <= t <= end + NOT_READY_WITHIN_S]
    ready_again = [t for t, ready in readiness if ready and t > (flips[-1] if flips else end)]
    print(f"\n[outage] broker frozen {end - start:.1f} s: not-ready from "
          f"{(flips[0] - start if flips else float('nan')):+.1f} s to "
          f"{(flips[-1] - start if flips else float('nan')):+.1f} s after the freeze, ready again "
          f"{(ready_again[0] - end if ready_again else float('nan')):+.1f} s after it ended; all "
          f"answered {recovered_s:.1f} s after the load; {figures.line()}")
    assert worker.alive() and worker.pid == pid_before, worker.log_tail()
    assert flips, f"/readyz never reported not-ready\n{worker.log_tail()}"
    assert ready_again, "/readyz never reported ready again"
    assert figures.lost == []
    assert figures.order_violations == 0
    assert figures.mismatched_response_ids == []


SHUTDOWN_S = 3.0


async def test_sigterm_while_the_broker_is_frozen_exits_in_time(pool_factory, module_broker):
    """SIGTERM with the broker frozen: every shutdown step is bounded, so the worker exits soon
    after its shutdown timeout instead of waiting for the broker; a successor started once the
    broker is back answers everything left over."""
    pool = await pool_factory(partitions=4)
    settings = pool.settings
    # A 40 ms step with 8 in flight caps the worker at 200 events/s on any machine: the 500
    # events left after the first 100 answers take it at least 2.5 s, so the stop finds work
    # in flight that the frozen broker cannot acknowledge.
    worker = pool.spawn("stopped", CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_S),
                        **rate_capped(step_ms=40, in_flight=8))
    await worker.wait_ready()
    try:
        async with OutputReader(settings) as reader:
            sent = await produce(settings, chat_events(seed=405, count=600, channels=20))
            await until(lambda: len(reader.answered_ids()) >= 100, 30, "100 answers")
            before = await worker.stats()
            os.kill(module_broker.pid, signal.SIGSTOP)
            try:
                code, stop_s = await worker.terminate(timeout_s=SHUTDOWN_S + 20)
            finally:
                os.kill(module_broker.pid, signal.SIGCONT)
            successor = pool.spawn("successor")
            await successor.wait_ready()
            await settle(settings, reader, sent)
            figures = analyse(sent, reader)
    finally:
        os.kill(module_broker.pid, signal.SIGCONT)
    print(f"\n[outage] SIGTERM with the broker frozen: exit code {code} after {stop_s:.1f} s "
          f"(shutdown timeout {SHUTDOWN_S:.0f} s); {figures.line()}")
    backlog = sum(before["kafka"]["lag"].values()) if before else 0
    assert backlog > 0, "the worker had answered everything before the freeze: nothing was tested"
    assert code is not None, f"still running {SHUTDOWN_S + 20:.0f} s after SIGTERM"
    assert stop_s < SHUTDOWN_S + STOP_MARGIN_S, worker.log_tail()
    assert figures.lost == []
