"""The bench harness: the drain wait, on the real broker, counts what is on the response topic
exactly (the embedded broker's ``end_offsets`` lag a batch behind) without fetching it all
meanwhile, and reads it at most once an interval; a timed run collects no garbage in the bench
process; the two references a member is measured against (the minimal loop and the relay)
answer every event, in order per channel."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.devtools.bench.harness import (
    SteadyCpu,
    _wait_for_responses,
    member_env,
    preload,
    reference_command,
    relay_command,
    run_children,
)
from stream.devtools.bench.scenarios import _median_or_none, backlog, positions
from stream.kafka.topics import ensure_topics


class StillRunning:
    """A member process that has not exited."""

    def poll(self) -> None:
        return None


async def _publish_in_batches(settings, batches: int, per_batch: int) -> None:  # type: ignore[no-untyped-def]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for batch in range(batches):
            for i in range(per_batch):
                await producer.send(settings.response_topic, orjson.dumps(
                    {"in_reply_to": f"e{batch}-{i}"}), key=f"c{i % 7}".encode())
            await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.kafka
async def test_the_drain_wait_sees_every_record_of_the_last_batches(settings_for):
    settings = settings_for()
    await ensure_topics(settings)
    await _publish_in_batches(settings, batches=3, per_batch=50)
    responses = await _wait_for_responses(settings, 150, 30, [StillRunning()])  # type: ignore[list-item]
    assert sorted(r["in_reply_to"] for r in responses.values) == sorted(
        f"e{b}-{i}" for b in range(3) for i in range(50))
    assert len(responses.timestamps_ms) == 150


@pytest.mark.kafka
async def test_the_drain_wait_ends_at_its_deadline_with_what_there_is(settings_for):
    settings = settings_for()
    await ensure_topics(settings)
    await _publish_in_batches(settings, batches=1, per_batch=20)
    started = time.monotonic()
    # The deadline also covers the watching consumer's start and its first fetches: 5 s.
    responses = await _wait_for_responses(settings, 21, 5.0, [StillRunning()])  # type: ignore[list-item]
    assert len(responses.values) == 20
    assert time.monotonic() - started < 30  # the 5 s deadline, and reading 20 records back


class Notes:
    """A meter that keeps when it was told a count."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def note(self, written: int) -> None:
        self.at.append(time.monotonic())


@pytest.mark.kafka
async def test_the_drain_wait_reads_the_watermarks_no_more_than_once_an_interval(settings_for):
    settings = settings_for()
    await ensure_topics(settings)
    await _publish_in_batches(settings, batches=1, per_batch=5)
    notes = Notes()
    # Never complete (6 expected, 5 written): the watcher polls until its 6 s deadline, which
    # also covers the watching consumer's start.
    await _wait_for_responses(settings, 6, 6.0, [StillRunning()], [notes],  # type: ignore[list-item]
                              poll_interval_s=1.5)
    assert len(notes.at) >= 2  # it went on watching after the first read
    # Polls start at most every 1.5 s within the 6 s: unpaced, a poll with nothing new to
    # fetch returns after its 0.1 s fetch wait, about 60 in all.
    assert len(notes.at) <= 6.0 / 1.5 + 1


def test_the_steady_cpu_counts_only_what_was_answered_between_the_first_and_last_notes():
    readings = iter([2.0, 2.5, 3.0])  # CPU seconds, start-up already behind the first one
    steady = SteadyCpu(lambda: next(readings))
    steady.note(0)  # nothing answered yet: no reading
    assert steady.us_per_event() is None
    steady.note(1_000)
    assert steady.us_per_event() is None  # one note: no span yet
    steady.note(1_000)
    assert steady.us_per_event() is None  # the same count twice: no events in the span
    steady.note(3_000)
    assert steady.us_per_event() == pytest.approx((3.0 - 2.0) / 2_000 * 1e6)


def test_no_collection_runs_while_the_bench_measures():
    import gc

    from stream.devtools.bench.harness import without_collections

    runs: list[int] = []

    def note(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            runs.append(info["generation"])

    with without_collections():
        gc.callbacks.append(note)
        try:
            for _ in range(50_000):  # well past every threshold: a cycle each
                cycle: list[object] = []
                cycle.append(cycle)
            assert not gc.isenabled() and runs == []
        finally:
            gc.callbacks.remove(note)
    assert gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.kafka
@pytest.mark.parametrize("command", [reference_command, relay_command],
                         ids=["minimal loop", "relay"])
async def test_a_reference_answers_every_event_once_in_order_per_channel(  # type: ignore[no-untyped-def]
        settings_for, kafka_broker, command):
    settings = settings_for()
    events = backlog(600, 30, seed=3)
    await preload(settings, events)
    responses, run = await run_children([command()], member_env(settings), settings,
                                        len(events), timeout_s=60, broker_pid=kafka_broker.pid)
    assert run.exit_codes == [0]
    # The member's CPU was read while it ran, and never beyond what the whole run cost.
    steady = run.steady
    assert steady is not None and steady.first is not None and steady.last is not None
    assert 0 < steady.first[1] <= steady.last[1] <= run.cpu_s
    if kafka_broker.pid is not None:  # the embedded broker (not a container): read too
        assert run.broker_steady is not None and run.broker_steady.first is not None
        assert run.broker_steady.first[1] > 0
    assert sorted(r["in_reply_to"] for r in responses.values) == sorted(
        str(e["event_id"]) for e in events)
    assert responses.order_violations(positions(events)) == 0


def test_the_latency_trend_takes_the_offers_first_and_last_second_and_unanswered_as_endless():
    import math

    from stream.devtools.bench.scenarios import latency_trend

    sent = {f"e{i}": i * 0.01 for i in range(300)}  # 3 s of offer, 100 events a second
    received = {event: at + (0.005 if at < 1 else 0.050) for event, at in sent.items()}
    assert latency_trend(sent, received) == {"p99_first_s_ms": 5.0, "p99_last_s_ms": 50.0}
    del received["e299"]  # the last one sent is never answered
    assert latency_trend(sent, received) == {"p99_first_s_ms": 5.0, "p99_last_s_ms": math.inf}
    assert latency_trend({}, {}) == {"p99_first_s_ms": 0.0, "p99_last_s_ms": 0.0}


def test_a_ratio_to_a_missing_or_zero_figure_is_left_empty():
    from stream.devtools.bench.report import _cell
    from stream.devtools.bench.scenarios import _ratio

    assert _ratio(60.0, 40.0) == 1.5
    assert _ratio(None, 40.0) is None and _ratio(60.0, None) is None and _ratio(60.0, 0.0) is None
    assert _cell(None) == ""


@pytest.mark.parametrize("plugin", ["", "stream.devtools.bench.steps:io_step"],
                         ids=["eager", "waiting"])
async def test_the_engine_cost_child_answers_every_event_without_kafka(plugin):  # type: ignore[no-untyped-def]
    from stream.devtools.bench.harness import clean_env
    from stream.devtools.bench.scenarios import _engine_cost

    env = clean_env()
    env.update({"CHATSTREAM_PROCESSORS": "reply", "CHATSTREAM_PROCESSOR_PLUGINS": plugin,
                "CHATSTREAM_BENCH_IO_MS": "1", "CHATSTREAM_MAX_IN_FLIGHT": "1000",
                # Nowhere to connect to: the engine alone must not need a broker.
                "CHATSTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    figures = await _engine_cost(2_500, env)
    assert (figures["events"], figures["answered"], figures["failed"]) == (2_500, 2_500, 0)
    assert figures["cpu_us_per_event"] > 0 and figures["rate"] > 0


def test_the_cpu_timeline_averages_cores_between_the_samples_inside_the_window():
    from stream.devtools.bench.harness import CpuTimeline

    timeline = CpuTimeline(read=lambda: 0.0)
    timeline.samples = [(10.0, 1.0), (10.5, 1.25), (11.0, 1.5), (11.5, 2.5), (12.0, 3.5)]
    assert timeline.cores(10.0, 11.0) == 0.5  # 0.5 CPU seconds over 1 s
    assert timeline.cores(11.0, 12.0) == 2.0
    assert timeline.cores(10.2, 11.2) == 0.5  # from 10.5 to 11.0
    assert timeline.cores(11.6, 11.9) is None  # no sample inside
    assert timeline.cores(12.0, 13.0) is None  # one sample only


async def test_the_cpu_timeline_samples_until_cancelled():
    from stream.devtools.bench.harness import CpuTimeline

    reads = iter(range(1_000))
    timeline = CpuTimeline(read=lambda: float(next(reads)), interval_s=0.01)
    task = asyncio.create_task(timeline.run())
    while len(timeline.samples) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    count = len(timeline.samples)
    await asyncio.sleep(0.05)
    assert len(timeline.samples) == count  # stopped
    times = [at for at, _ in timeline.samples]
    assert times == sorted(times) and [cpu for _, cpu in timeline.samples] == [
        float(n) for n in range(count)]


def test_a_target_is_not_met_when_a_run_left_events_unanswered_or_a_process_failed():
    """A drain that lost an event (its duplicates aside) or whose member exited non-zero
    measured less than it claims: its targets are not met, whatever the figure."""
    from stream.devtools.bench.scenarios import ScenarioResult

    whole = ScenarioResult("s", rows=[{"run": "a", "events": 10, "answered": 10,
                                       "exit_codes": [0]}, {"run": "cache", "events": 10}])
    whole.target("rate", 5.0, 1.0)
    short = ScenarioResult("s", rows=[{"run": "a", "events": 10, "answered": 9,
                                       "exit_codes": [0]}])
    short.target("rate", 5.0, 1.0)
    failed = ScenarioResult("s", rows=[{"run": "b", "events": 10, "answered": 10,
                                        "exit_codes": [0, 1]}])
    failed.target("rate", 5.0, 1.0)
    unready = ScenarioResult("s", rows=[{"run": "c", "events": 10, "answered": 10,
                                         "ready": False}])
    unready.target("p99", 5.0, 10.0, higher_is_better=False)
    assert whole.targets[0]["met"]
    assert not short.targets[0]["met"] and "[incomplete: a]" in short.targets[0]["target"]
    assert not failed.targets[0]["met"]
    assert not unready.targets[0]["met"]  # the load began before the group was stable


def test_the_bench_children_start_without_any_setting_of_the_shell(monkeypatch):
    """Settings read without a prefix count too: an exported
    ENABLE_CONCURRENT_CONVERSATION_MANAGER=false would turn every member into the basic path."""
    from stream.devtools.bench.harness import clean_env

    monkeypatch.setenv("ENABLE_CONCURRENT_CONVERSATION_MANAGER", "false")
    monkeypatch.setenv("max_concurrent_sessions", "3")
    monkeypatch.setenv("CHATSTREAM_MAX_IN_FLIGHT", "1")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    env = clean_env()
    assert {k.upper() for k in env} & {"ENABLE_CONCURRENT_CONVERSATION_MANAGER",
                                       "MAX_CONCURRENT_SESSIONS", "CHATSTREAM_MAX_IN_FLIGHT"} == set()
    assert env["SOMETHING_ELSE"] == "kept"


def test_a_median_over_rounds_has_no_figure_when_a_round_left_events_unanswered():
    """The latency target is the median of the shipped configuration's rounds: one round
    with no p99 (events unanswered) leaves no figure to meet the target with."""
    assert _median_or_none([83.8, 31.5, 31.7]) == 31.7
    assert _median_or_none([20.0, None, 21.0]) is None
    assert _median_or_none([]) is None
