"""``chatstream bench``: the concurrent manager against the basic path, measured in one run.

Two scenarios, each run on both engines back to back so the ratio is fair to the machine:
1. engine only: many sessions, an I/O-bound processor (a fixed wait), no Kafka;
2. end to end on the embedded broker with the default processors.
Results are printed as rates and as ratios; absolute numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from typing import Any

from infra.broker import EmbeddedBroker
from processors.base import ExecutionKind, Stage
from schemas.context import ProcessorContext
from stream.app.api import create_concurrent_conversation_manager
from stream.app.wiring import build_engine
from stream.botkit.client import BotClient, TopicWatcher
from stream.devtools.bots import chat_events
from stream.kafka.member import StreamRunner
from stream.kafka.topics import ensure_topics
from stream.observability.stats import percentile
from stream.settings import Settings


class SimulatedLookup:
    """Stands for a remote lookup (a database or an API): waits a fixed time."""

    name = "lookup"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.timeout_s = latency_s * 10 + 1

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        await asyncio.sleep(self.latency_s)
        return {"looked_up": context.event.event_id}


@dataclass
class Measurement:
    label: str
    events: int
    seconds: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def _engine_only(enabled: bool, events: int, latency_s: float) -> Measurement:
    manager = await create_concurrent_conversation_manager(
        processors=[SimulatedLookup(latency_s)], enable_concurrent_manager=enabled,
        max_in_flight=256, max_concurrent_sessions=max(events, 1))
    started = time.monotonic()
    responses = await asyncio.gather(*(
        manager.process_conversation_message(user_id=f"u{i}", channel_id=f"c{i % 64}",
                                             content="hello", bot_id="bench")
        for i in range(events)))
    seconds = time.monotonic() - started
    await manager.stop()
    latencies = [r.queued_ms + r.processing_ms for r in responses]
    return Measurement("concurrent" if enabled else "basic", events, seconds,
                       percentile(latencies, 50), percentile(latencies, 99))


async def _end_to_end(settings: Settings, enabled: bool, events: int) -> Measurement:
    suffix = f"{'c' if enabled else 'b'}-{time.monotonic_ns()}"
    settings = settings.model_copy(update={
        "enable_concurrent_manager": enabled, "group_id": f"bench-{suffix}",
        "inbound_topic": f"bench-in-{suffix}", "response_topic": f"bench-out-{suffix}",
        "dlq_topic": f"bench-dlq-{suffix}",
    })
    await ensure_topics(settings)
    batch = list(chat_events(seed=99, count=events, channels=64))
    async with BotClient(settings, "bench-bots") as client:
        await asyncio.gather(*[await client.publish(e) for e in batch])
    stop = asyncio.Event()
    runner = StreamRunner(settings, lambda sink: build_engine(settings, sink))
    task = asyncio.create_task(runner.run(stop))
    await runner.ready.wait()  # the group join is not part of the measurement
    started = time.monotonic()
    async with TopicWatcher(settings) as watcher:
        await watcher.wait_until(lambda: len(watcher.response_order) >= events, timeout_s=300)
    seconds = time.monotonic() - started
    stop.set()
    await task
    latencies = [r["queued_ms"] + r["processing_ms"] for r in watcher.response_order]
    return Measurement("concurrent" if enabled else "basic", len(watcher.response_order),
                       seconds, percentile(latencies, 50), percentile(latencies, 99))


def _report(title: str, concurrent: Measurement, basic: Measurement) -> None:
    print(f"\n{title}")
    for m in (concurrent, basic):
        print(f"  {m.label:<11} {m.events:6d} events in {m.seconds:7.2f} s = {m.rate:9.1f}/s   "
              f"in-engine p50 {m.p50_ms:8.1f} ms  p99 {m.p99_ms:8.1f} ms")
    ratio = concurrent.rate / basic.rate if basic.rate else float("inf")
    print(f"  throughput ratio concurrent/basic: {ratio:.1f}x")


async def run_bench(settings: Settings, *, events: int, io_latency_ms: float) -> None:
    latency_s = io_latency_ms / 1000
    basic_events = max(10, min(events, int(5.0 / latency_s)))  # keep the sequential run ~5 s
    concurrent = await _engine_only(True, events, latency_s)
    basic = await _engine_only(False, basic_events, latency_s)
    _report(f"engine only, I/O-bound step of {io_latency_ms:.0f} ms", concurrent, basic)
    with EmbeddedBroker() as broker:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                               "partitions": 8})
        concurrent = await _end_to_end(settings, True, events)
        basic = await _end_to_end(settings, False, events)
        _report("end to end on the embedded broker, default processors", concurrent, basic)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak RSS of this process (broker and pool workers not included): {peak_mib:.0f} MiB")
