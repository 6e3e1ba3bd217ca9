"""A running member answers /metrics, /stats, /healthz and /readyz, and `chatstream stats`
renders its /stats, on the real broker."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from kafka_helpers import publish_events, simulated
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from schemas.events import ChatEvent
from stream.app.cli import app
from stream.app.service import Service
from stream.engine.sessions import session_key
from stream.kafka.member import StreamRunner
from stream.kafka.topics import ensure_topics
from stream.settings import Settings, load_settings

EVENTS = 30


@dataclass
class LiveMember:
    settings: Settings
    runner: StreamRunner
    url: str
    events: list[dict[str, Any]]
    ready_before: bool
    readyz_before: int


async def _until(condition, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def member(kafka_broker):
    """A Service with CHATSTREAM_HTTP_PORT=0, answered EVENTS events; stopped at module end."""
    suffix = uuid.uuid4().hex[:10]
    settings = load_settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers, group_id=f"obs-{suffix}",
        inbound_topic=f"in-{suffix}", response_topic=f"out-{suffix}", dlq_topic=f"dlq-{suffix}",
        changelog_topic=f"sessions-{suffix}",
        partitions=4, session_timeout_ms=3000, heartbeat_interval_ms=600, commit_interval_ms=100,
        max_worker_processes=1, max_worker_threads=4, http_port=0)
    await ensure_topics(settings)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # Service.run configures logging
    stop, service = asyncio.Event(), Service(settings)
    runner = service.runner
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait({service.http_port, task}, timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)
        url = f"http://127.0.0.1:{service.http_port.result()}"
        ready_before = runner.ready.is_set()
        async with httpx.AsyncClient() as client:
            readyz_before = (await client.get(url + "/readyz")).status_code
        await asyncio.wait_for(runner.ready.wait(), 30)
        events = simulated(EVENTS, seed=7)
        await publish_events(settings, events)
        await _until(lambda: runner.counters.answered >= EVENTS)
        yield LiveMember(settings, runner, url, events, ready_before, readyz_before)
    finally:
        stop.set()
        await task
        root.handlers[:] = handlers
        root.setLevel(level)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.kafka
async def test_readyz_is_503_before_assignment_and_200_after(member):
    """/readyz says not ready until partitions are assigned, then ready; /healthz is alive."""
    assert not member.ready_before and member.readyz_before == 503
    async with httpx.AsyncClient(base_url=member.url) as client:
        ready, health = await client.get("/readyz"), await client.get("/healthz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "partitions": 4}
    assert health.status_code == 200 and health.json() == {"status": "alive"}


@pytest.mark.kafka
async def test_metrics_count_what_happened(member):
    """/metrics: consumed = answered = end-to-end observations = events sent, no lag, no queue."""
    async with httpx.AsyncClient(base_url=member.url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    values = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert value("chatstream_events_consumed_total") == EVENTS
    assert value("chatstream_events_answered_total") == EVENTS
    assert value("chatstream_end_to_end_latency_seconds_count") == EVENTS
    assert value("chatstream_end_to_end_latency_seconds_bucket", le="+Inf") == EVENTS
    assert value("chatstream_queue_depth", priority="critical") == 0
    lag = [v for (name, _), v in values.items() if name == "chatstream_consumer_lag_offsets"]
    assert lag and all(v == 0 for v in lag)
    events = [ChatEvent.model_validate(e) for e in member.events]
    sessions = {session_key(e, member.settings.session_scope) for e in events}
    assert value("chatstream_active_sessions") == len(sessions)
    assert 0 <= value("chatstream_cache_hit_ratio") <= 1
    assert value("chatstream_pool_workers", pool="thread") == 4
    assert value("chatstream_pool_workers", pool="process") == 1
    assert 0 <= value("chatstream_pool_utilization", pool="thread") <= 1
    assert value("chatstream_processor_outcomes_total", processor="reply", outcome="ok") == EVENTS


@pytest.mark.kafka
async def test_stats_has_every_section(member):
    """/stats holds sessions, performance, queues, channels, cache, pools, processors, kafka."""
    async with httpx.AsyncClient(base_url=member.url) as client:
        stats = (await client.get("/stats")).json()
    for section in ("sessions", "performance", "queues", "channels", "cache", "pools",
                    "processors", "kafka"):
        assert stats[section], section
    assert stats["performance"]["total_processed"] == EVENTS
    assert stats["kafka"]["counters"]["answered"] == EVENTS
    assert stats["kafka"]["ready"] is True
    assert set(stats["pools"]) == {"thread", "process"}
    assert stats["processors"]["reply"]["ok"] == EVENTS


@pytest.mark.kafka
async def test_stats_command_renders_a_table(member):
    """`chatstream stats --url` prints one titled section per group with aligned rows."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["stats", "--url", member.url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mode: concurrent")
    for section in ("sessions", "performance", "queues", "pools", "kafka"):
        assert section in lines
    assert any(line.split()[:2] == ["total_processed", str(EVENTS)] for line in lines)
    assert any(line.strip().startswith("critical") and "depth=0" in line for line in lines)


def test_stats_command_fails_clearly_when_nothing_listens():
    """With no member at --url, `chatstream stats` prints one error line and exits 1."""
    with socket.socket() as sock:  # a port just freed: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(app, ["stats", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"chatstream stats: cannot read http://127.0.0.1:{port}/stats")


def test_stats_command_finds_the_member_from_its_settings_or_a_bare_address():
    """Without --url it reads the address the settings give the member; a bare host:port is
    a URL; with neither there is a hint, not a guess at a port."""
    from stream.observability.stats_view import StatsUnavailable, member_url
    from stream.settings import load_settings

    settings = load_settings(http_port=9312, http_host="0.0.0.0")
    assert member_url(None, settings) == "http://0.0.0.0:9312"
    assert member_url(None, load_settings(http_port=9312, http_host="::1")) == "http://[::1]:9312"
    assert member_url("127.0.0.1:9400", settings) == "http://127.0.0.1:9400"
    assert member_url("https://stats.example:443", settings) == "https://stats.example:443"
    for unset in (None, 0):
        with pytest.raises(StatsUnavailable, match="no --url, and CHATSTREAM_HTTP_PORT names"):
            member_url(None, load_settings(http_port=unset))


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999"])
def test_stats_command_fails_clearly_on_an_address_that_is_not_a_url(url):
    result = CliRunner().invoke(app, ["stats", "--url", url])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("chatstream stats: cannot read")
