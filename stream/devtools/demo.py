"""``chatstream demo``: embedded broker, topics, chatstream and simulated bots, then a summary."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from infra.broker import EmbeddedBroker
from stream.app.service import Service
from stream.botkit.client import BotClient, TopicWatcher
from stream.devtools.bots import chat_events
from stream.kafka.member import StreamRunner
from stream.kafka.topics import ensure_topics
from stream.observability.stats import percentile
from stream.settings import Settings

_MALFORMED = (
    b'{"event_id": "broken", "content": ',
    b'{"event_id": 42, "bot_id": "b", "channel_id": "c", "user_id": "u", "content": "x"}',
    b'{"bot_id": "b", "channel_id": "c", "content": "no event id or user"}',
    b"\xff\xfe not even text",
)


@dataclass
class DemoSummary:
    sent: int = 0
    invalid_sent: int = 0
    answered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def all_answered(self) -> bool:
        return self.answered == self.sent and self.dead_lettered == self.invalid_sent

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def line(self) -> str:
        return (f"events sent {self.sent}, answered {self.answered}, "
                f"dead-lettered {self.dead_lettered} (of {self.invalid_sent} malformed), "
                f"duplicates {self.duplicates}, p50 {self.percentile(50):.1f} ms, "
                f"p99 {self.percentile(99):.1f} ms, "
                f"{self.sent / max(self.elapsed_s, 1e-9):.1f} events/s")


class _Tracker:
    """Matches responses to send times and prints a sample of the conversation."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.answered: set[str] = set()
        self.duplicates = 0
        self._last_sample = 0.0

    def on_record(self, topic: str, record: Any) -> None:
        if topic.endswith("dlq") or not record.value:
            return
        response = orjson.loads(record.value)
        event_id = response["in_reply_to"]
        if event_id in self.answered:
            self.duplicates += 1
            return
        self.answered.add(event_id)
        if event_id in self.sent_at:
            self.latencies_ms.append((time.monotonic() - self.sent_at[event_id]) * 1000)
        self._maybe_print(response)

    def _maybe_print(self, response: dict[str, Any]) -> None:
        now = time.monotonic()
        interval = 0.5 if response["priority"] == "critical" else 2.0
        if now - self._last_sample < interval:
            return
        self._last_sample = now
        emotion = response["analysis"].get("emotion", {}).get("data", {}).get("label", "?")
        degraded = f" degraded={response['degraded']}" if response["degraded"] else ""
        print(f"    [{response['priority']:>8}] {response['channel_id']}/{response['user_id']} "
              f"({emotion}) -> {str(response['reply'])[:90]!r}{degraded}", flush=True)


async def _send_traffic(client: BotClient, tracker: _Tracker, summary: DemoSummary, *,
                        duration_s: float, rate: float, channels: int, invalid_every: int) -> None:
    total = max(1, int(duration_s * rate))
    started = time.monotonic()
    acks = []
    for i, event in enumerate(chat_events(seed=7, count=total, channels=channels)):
        due = started + i / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        tracker.sent_at[event["event_id"]] = time.monotonic()
        acks.append(await client.publish(event))
        summary.sent += 1
        if invalid_every and (i + 1) % invalid_every == 0:
            acks.append(await client.publish_raw(_MALFORMED[summary.invalid_sent % len(_MALFORMED)],
                                                 key=event["channel_id"].encode()))
            summary.invalid_sent += 1
    await asyncio.gather(*acks)


async def _report_progress(watcher: TopicWatcher, tracker: _Tracker, summary: DemoSummary,
                           started: float) -> None:
    while True:
        await asyncio.sleep(1.0)
        recent = tracker.latencies_ms[-200:]
        p50 = statistics.median(recent) if recent else 0.0
        print(f"[{time.monotonic() - started:5.1f}s] sent {summary.sent:5d}  "
              f"answered {len(tracker.answered):5d}  dead-lettered {len(watcher.dead_letters):3d}  "
              f"p50 {p50:6.1f} ms", flush=True)


async def _wait_until_ready(member: Service, service: asyncio.Task[StreamRunner]) -> None:
    runner = member.runner
    ready = asyncio.create_task(runner.ready.wait())
    await asyncio.wait({ready, service}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if service.done():
        service.result()
    if not ready.done():
        ready.cancel()
        raise RuntimeError("chatstream did not join its group within 60 s")
    print(f"chatstream joined group {runner.settings.group_id!r}, "
          f"owns {len(runner.assignment)} partitions", flush=True)
    if member.http_port.done():
        url = f"http://{runner.settings.http_host}:{member.http_port.result()}"
        print(f"stats: {url}/stats  metrics: {url}/metrics  (chatstream stats --url {url})",
              flush=True)


async def run_demo(settings: Settings, *, duration_s: float, rate: float, channels: int,
                   invalid_every: int) -> DemoSummary:
    """Run the whole demo and print its summary line; return the summary."""
    with EmbeddedBroker() as broker:
        settings = settings.model_copy(update={
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "http_port": 0 if settings.http_port is None else settings.http_port,
        })
        print(f"embedded broker on {broker.bootstrap_servers}", flush=True)
        await ensure_topics(settings)
        stop = asyncio.Event()
        member = Service(settings)
        runner = member.runner
        service = asyncio.create_task(member.run(stop))
        await _wait_until_ready(member, service)
        tracker, summary = _Tracker(), DemoSummary()
        started = time.monotonic()
        async with TopicWatcher(settings, listener=tracker.on_record) as watcher, \
                BotClient(settings, "demo-bots") as client:
            progress = asyncio.create_task(_report_progress(watcher, tracker, summary, started))
            await _send_traffic(client, tracker, summary, duration_s=duration_s, rate=rate,
                                channels=channels, invalid_every=invalid_every)
            await watcher.wait_until(
                lambda: len(tracker.answered) >= summary.sent
                and len(watcher.dead_letters) >= summary.invalid_sent, timeout_s=30.0)
            progress.cancel()
            summary.elapsed_s = time.monotonic() - started
            summary.answered = len(tracker.answered)
            summary.duplicates = tracker.duplicates
            summary.dead_lettered = len(watcher.dead_letters)
            summary.latencies_ms = tracker.latencies_ms
        stop.set()
        await service
        if runner.engine is not None:
            inside = runner.engine.get_performance_stats()["performance"]
            print(f"inside the member (admission to answer, no broker hops): "
                  f"p50 {inside['p50_response_time_ms']:.2f} ms, "
                  f"p99 {inside['p99_response_time_ms']:.2f} ms, "
                  f"{inside['total_degraded']} degraded", flush=True)
        print(f"SUMMARY (bot's send to the response's arrival): {summary.line()}", flush=True)
        return summary
