"""Overload: offered load far above capacity is absorbed by pausing the partitions (lag grows in
Kafka, not in memory), nothing is dropped, and critical events keep jumping the queue."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
import uuid
from datetime import UTC, datetime

import pytest
from workers import OutputReader, analyse, produce, rate_capped, settle, until

from stream.devtools.bots import chat_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

EVENTS = 10_000
CRITICAL_EVERY = 40  # one explicit-priority "critical" event per 40
MAX_BUFFERED = 500
MAX_IN_FLIGHT = 16
# A 20 ms step with 16 in flight caps the worker at 800 events/s whatever the machine's speed,
# so the 10k events take at least 12.5 s: enough 1 s windows to compare priorities in.
PACED = rate_capped(step_ms=20, in_flight=MAX_IN_FLIGHT)
RSS_GROWTH_LIMIT_MB = 50.0  # default caches included; 10k events held in memory would pass it


def _with_critical(seed: int) -> list[dict]:  # type: ignore[type-arg]
    """Simulated traffic, explicitly "normal", with critical events of 50 VIP sessions sprinkled
    in. Explicit priorities keep the simulator's crisis texts from making normal sessions'
    lanes critical too (a lane inherits the level of its most urgent queued event)."""
    rng = random.Random(seed + 1)  # not the simulator's own sequence: ids must not collide
    events = []
    for i, event in enumerate(chat_events(seed=seed, count=EVENTS, channels=60)):
        event = {**event, "priority": "normal"}
        if i % CRITICAL_EVERY == CRITICAL_EVERY - 1:
            event = {**event, "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "user_id": f"vip-{rng.randrange(50):02d}", "priority": "critical",
                     "content": "my payment failed twice, please check"}
        events.append(event)
    return events


async def test_overload_pauses_bounds_memory_and_keeps_critical_fast(pool_factory):
    """10k events at full producer speed against a worker bounded to 500 buffered events: the
    runner pauses, lag builds up and drains to zero, RSS stays bounded, every event is answered
    once, and critical events wait in the queue far less than normal ones answered alongside."""
    pool = await pool_factory(partitions=8)
    settings = pool.settings
    worker = pool.spawn("overloaded", CHATSTREAM_MAX_BUFFERED=str(MAX_BUFFERED), **PACED)
    await worker.wait_ready()
    baseline = worker.rss_bytes()
    samples: list[tuple[float, int, int]] = []  # (time, rss, lag)

    async def sample() -> None:
        while True:
            stats = await worker.stats()
            lag = sum(stats["kafka"]["lag"].values()) if stats else -1
            samples.append((time.monotonic(), worker.rss_bytes(), lag))
            await asyncio.sleep(0.25)

    events = _with_critical(seed=707)
    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    try:
        async with OutputReader(settings) as reader:
            sent = await produce(settings, events)
            produced_s = time.monotonic() - started
            expected = {event["event_id"] for event in sent.events}
            await until(lambda: expected <= reader.answered_ids(), 120,
                        f"every event answered\n{pool.logs()}")
            drained_s = time.monotonic() - started
            await settle(settings, reader, sent)
            figures = analyse(sent, reader)
            await until(lambda: bool(samples) and samples[-1][2] == 0, 10, "lag back to 0")
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    stats = await worker.stats()
    assert stats is not None

    peak = max(rss for _, rss, _ in samples)
    max_lag = max(lag for _, _, lag in samples)
    answers = [figures.first_answer[e["event_id"]].response for e in sent.events]
    ratios = _critical_to_normal_ratios(answers)
    critical_ms = [r["queued_ms"] for r in answers if r["priority"] == "critical"]
    normal_ms = [r["queued_ms"] for r in answers if r["priority"] == "normal"]
    print(f"\n[overload] {figures.line()}; produced in {produced_s:.1f} s "
          f"({EVENTS / produced_s:.0f}/s), all answered after {drained_s:.1f} s "
          f"({EVENTS / drained_s:.0f}/s); pauses {stats['kafka']['counters']['pauses']}, "
          f"max lag {max_lag}; RSS baseline {baseline / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB "
          f"(+{(peak - baseline) / 2**20:.0f} MB); queued_ms median critical "
          f"{statistics.median(critical_ms):.1f} vs normal {statistics.median(normal_ms):.1f}, "
          f"p95 critical {_p95(critical_ms):.1f}; critical/normal ratio at the same time: median "
          f"{statistics.median(ratios):.3f}, worst {max(ratios):.3f} over {len(ratios)} windows")
    timeline = ", ".join(f"{t - started:.0f}s:{rss / 2**20:.0f}MB/lag {lag}"
                         for t, rss, lag in samples[::8])
    print(f"[overload] timeline {timeline}")
    assert figures.lost == [] and figures.duplicates == 0, figures.line()
    assert figures.order_violations == 0
    assert stats["kafka"]["counters"]["pauses"] > 0, "the runner never paused"
    assert max_lag > 5 * MAX_BUFFERED, "the backlog never built up in Kafka"
    assert (peak - baseline) / 2**20 < RSS_GROWTH_LIMIT_MB
    assert len(ratios) >= 10
    assert statistics.median(ratios) < 0.2
    assert worker.alive()


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def _critical_to_normal_ratios(answers: list[dict]) -> list[float]:  # type: ignore[type-arg]
    """Per 1 s window of processing time holding both kinds: median critical queued_ms over
    median normal queued_ms."""
    windows: dict[int, dict[str, list[float]]] = {}
    for response in answers:
        at = datetime.fromisoformat(response["processed_at"]).astimezone(UTC).timestamp()
        bucket = windows.setdefault(int(at), {"critical": [], "normal": []})
        if response["priority"] in bucket:
            bucket[response["priority"]].append(response["queued_ms"])
    return [statistics.median(b["critical"]) / max(statistics.median(b["normal"]), 1e-3)
            for b in windows.values() if b["critical"] and len(b["normal"]) >= 5]
