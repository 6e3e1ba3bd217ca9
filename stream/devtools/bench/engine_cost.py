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
import sys
import time
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
    def __init__(self) -> None:
        self.counters = EventCounters()
        self.failed_count = 0

    def answered(self, item: WorkItem, response: ResponseEvent) -> None:
        self.counters.answered += 1

    def failed(self, item: WorkItem, error: BaseException) -> None:
        self.failed_count += 1


async def measure(count: int) -> dict[str, Any]:
    """Run ``count`` events through a fresh engine; its figures (see the module docstring)."""
    settings = load_settings()
    sink = _CountingSink()
    engine = build_engine(settings, sink)
    await engine.start()
    events = [decode_event(orjson.dumps(event)) for event in backlog(count, _SESSIONS)]
    started, cpu_started = time.monotonic(), time.process_time()
    for event in events:
        while engine.buffered >= _BUFFERED:
            await asyncio.sleep(0.0005)
        engine.submit(event)
    deadline = started + 120
    while sink.counters.answered + sink.failed_count < count and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    await engine.stop()
    done = sink.counters.answered + sink.failed_count
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
