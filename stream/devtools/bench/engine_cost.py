"""The engine's own cost per event, without Kafka: ``python -m stream.devtools.bench.engine_cost
EVENTS`` builds the engine a member would (configured by the same environment), submits
``EVENTS`` decoded events over 1,000 sessions as fast as its buffer bound lets it, waits for
every answer, and prints one JSON line: events, answered, failed, CPU microseconds per event
and the rate. Events are built and decoded before the clock starts, so only admission,
scheduling, the pipeline and the answer are measured.

It runs as a process of its own, on the members' event loop with their garbage-collector
settings, so the bench's own work does not mix into it; the broker's drift does not either,
which makes its figures steadier than a drain's when two versions of the engine are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from schemas.codec import decode_event
from schemas.events import ResponseEvent
from stream.app.service import run_on_loop, tune_garbage_collector
from stream.app.wiring import build_engine
from stream.devtools.bench.scenarios import backlog
from stream.engine.work import WorkItem
from stream.observability.counters import EventCounters
from stream.settings import load_settings

__all__ = ["measure"]

_SESSIONS = 1_000
_BUFFERED = 2_000  # admitted and not answered: a member's backpressure bound of this order


class _CountingSink:
    """Counts answers and wakes the feeder on each: a feeder that polled the engine with short
    sleeps would keep the event loop spinning, and its CPU would count as the engine's."""

    def __init__(self) -> None:
        self.counters = EventCounters()
        self.failed_count = 0
        self.progress = asyncio.Event()

    @property
    def done(self) -> int:
        return self.counters.answered + self.failed_count

    def answered(self, item: WorkItem, response: ResponseEvent) -> None:
        self.counters.answered += 1
        self.progress.set()

    def failed(self, item: WorkItem, error: BaseException) -> None:
        self.failed_count += 1
        self.progress.set()

    async def wait_until(self, reached: Callable[[], bool]) -> None:
        while not reached():
            self.progress.clear()
            await self.progress.wait()


async def measure(count: int) -> dict[str, Any]:
    """Run ``count`` events through a fresh engine; its figures (see the module docstring)."""
    settings = load_settings()
    sink = _CountingSink()
    engine = build_engine(settings, sink)
    await engine.start()
    events = [decode_event(orjson.dumps(event)) for event in backlog(count, _SESSIONS)]
    started, cpu_started = time.monotonic(), time.process_time()
    for event in events:
        if engine.buffered >= _BUFFERED:
            await sink.wait_until(lambda: engine.buffered < _BUFFERED)
        engine.submit(event)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sink.wait_until(lambda: sink.done >= count), 120)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    await engine.stop()
    done = sink.done
    return {"events": count, "answered": sink.counters.answered, "failed": sink.failed_count,
            "cpu_us_per_event": round(cpu / max(done, 1) * 1e6, 1),
            "rate": round(done / elapsed, 1) if elapsed > 0 else 0.0}


def main(argv: list[str]) -> None:
    count = int(argv[1]) if len(argv) > 1 else 20_000
    settings = load_settings()
    tune_garbage_collector(settings.gc_young_threshold)
    print(orjson.dumps(run_on_loop(measure(count), settings.event_loop)).decode())


if __name__ == "__main__":
    main(sys.argv)
