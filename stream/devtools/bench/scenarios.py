"""The benchmark scenarios. Each returns rows of figures and the targets it checks.

Every scenario but ``engine`` runs on a fresh embedded broker, is bounded in events and time,
and compares against a reference measured in the same run (the machines are shared: only ratios
travel). Members run as ``chatstream run`` child processes configured through the environment;
``engine`` runs the engine alone, without Kafka, in child processes too.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import statistics
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from infra.broker import EmbeddedBroker
from stream.app.supervisor import member_command
from stream.devtools.bench.harness import (
    CpuTimeline,
    Members,
    ResponseReader,
    bench_settings,
    clean_env,
    member_env,
    offer,
    preload,
    process_cpu_seconds,
    reference_command,
    relay_command,
    run_children,
    wait_for_group,
    without_collections,
)
from stream.observability.stats import percentile
from stream.settings import Settings

__all__ = ["SCENARIOS", "TRIALS", "ScenarioResult", "backlog", "ratio"]

Note = Callable[[str], None]
# Rounds of a ratio scenario, reference and subject in turn: on a shared machine the speed of
# both drifts by tens of percent from one minute to the next, and the median round's ratio
# drifts least.
TRIALS = 3
_IO_PLUGIN = "stream.devtools.bench.steps:io_step"


@dataclass
class ScenarioResult:
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def target(self, what: str, figure: float, goal: float, higher_is_better: bool = True,
               unit: str = "") -> None:
        """Judge a figure; never met when a run of the scenario left events unanswered or a
        process failed (its figure would then stand for less work than it claims)."""
        met = figure >= goal if higher_is_better else figure <= goal
        incomplete = self.incomplete_runs()
        if incomplete:
            what = f"{what} [incomplete: {', '.join(incomplete)}]"
        self.targets.append({"scenario": self.name, "target": what, "figure": round(figure, 3),
                             "goal": goal, "unit": unit, "met": met and not incomplete,
                             "higher_is_better": higher_is_better})

    def incomplete_runs(self) -> list[str]:
        """The rows whose events were not all answered (distinct events, duplicates aside),
        whose processes did not all exit 0, or whose members were not ready when the load
        began."""
        return [str(row.get("run", "?")) for row in self.rows
                if ("events" in row and "answered" in row and row["answered"] < row["events"])
                or any(code != 0 for code in row.get("exit_codes", ()))
                or row.get("ready") is False]


def backlog(count: int, sessions: int, seed: int = 7, *, critical_share: float = 0.0,
            session_of: Callable[[random.Random, int], int] | None = None
            ) -> list[dict[str, Any]]:
    """``count`` small events over ``sessions`` channels (one user each); a ``critical_share``
    of them marked critical and the rest low when it is set."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        session = session_of(rng, i) if session_of is not None else i % sessions
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "bot_id": "bench",
            "channel_id": f"c{session}", "user_id": f"u{session}",
            "content": f"hello number {i}, how is my order doing?"}
        if critical_share:
            event["priority"] = "critical" if rng.random() < critical_share else "low"
        events.append(event)
    return events


def positions(events: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """Event id -> (session, index among the session's events): for order checks."""
    seen: dict[str, int] = {}
    result = {}
    for event in events:
        session = f"{event['bot_id']}/{event['channel_id']}/{event['user_id']}"
        result[event["event_id"]] = (session, seen.get(session, 0))
        seen[session] = seen.get(session, 0) + 1
    return result


async def drain(broker: EmbeddedBroker, events: list[dict[str, Any]],
                extra_env: dict[str, str], timeout_s: float, command: list[str] | None = None,
                profile: Path | None = None) -> dict[str, Any]:
    """Preload ``events``, run one member (or ``command``) until all are answered; figures."""
    settings = bench_settings(broker.bootstrap_servers)
    await preload(settings, events)
    responses, run = await run_children([command or member_command()],
                                        member_env(settings, extra_env), settings, len(events),
                                        timeout_s, on_started=_profiler(profile),
                                        broker_pid=broker.pid)
    answered = len({value.get("in_reply_to") for value in responses.values})
    steady_us = run.steady.us_per_event() if run.steady is not None else None
    broker_us = run.broker_steady.us_per_event() if run.broker_steady is not None else None
    # Distinct events answered: a duplicate (a batch published again one by one) must not
    # stand in for an event that was never answered.
    return {"events": len(events), "answered": answered,
            "duplicates": len(responses.values) - answered,
            "steady_rate": round(responses.steady_rate(), 1), "cpu_s": round(run.cpu_s, 2),
            "cpu_us_per_event": round(run.cpu_s / max(answered, 1) * 1e6, 1),
            "steady_cpu_us_per_event": None if steady_us is None else round(steady_us, 1),
            "broker_steady_cpu_us_per_event": None if broker_us is None else round(broker_us, 1),
            "peak_rss_mib": round(run.peak_rss_mib, 1),
            "order_violations": responses.order_violations(positions(events)),
            "exit_codes": run.exit_codes}


def _profiler(path: Path | None) -> Callable[[list[int]], None] | None:
    if path is None:
        return None
    import shutil
    import subprocess

    # The virtualenv's py-spy, also when its bin folder is not on PATH.
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")

    def attach(pids: list[int]) -> None:
        if spy is not None:
            subprocess.Popen([spy, "record", "--format", "raw", "--nonblocking", "--rate",
                              "200", "-o", str(path), "--pid", str(pids[0])],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return attach


async def passthrough(note: Note, profile_dir: Path | None = None, events: int = 50_000,
                      trials: int = TRIALS) -> ScenarioResult:
    """One reply step, session scope channel: the member's fixed cost per event against the
    minimal aiokafka loop, on a 50,000-event backlog over 1,000 channels; in ``trials`` rounds
    of reference and members in turn, the targets on the median round's ratio."""
    result = ScenarioResult("passthrough")
    work = backlog(events, 1_000)
    member = {"CHATSTREAM_PROCESSORS": "reply", "CHATSTREAM_SESSION_SCOPE": "channel"}
    ratios: list[float] = []
    bare_ratios: list[float] = []
    with EmbeddedBroker() as broker:
        for trial in range(1, trials + 1):
            note(f"passthrough {trial}/{trials}: minimal aiokafka loop")
            reference = await drain(broker, work, {}, 120, reference_command())
            note(f"passthrough {trial}/{trials}: chatstream, 1 worker")
            one = await drain(broker, work, member, 180, profile=(
                profile_dir / "passthrough.raw.txt" if profile_dir and trial == 1 else None))
            note(f"passthrough {trial}/{trials}: chatstream, 1 worker, no changelog")
            bare = await drain(broker, work, {**member, "CHATSTREAM_CHANGELOG": "false"}, 180)
            result.rows += [{"run": "minimal aiokafka loop", "trial": trial, **reference},
                            {"run": "chatstream, 1 worker", "trial": trial, **one},
                            {"run": "chatstream, 1 worker, CHATSTREAM_CHANGELOG=false",
                             "trial": trial, **bare}]
            ratios.append(ratio(one, reference))
            bare_ratios.append(ratio(bare, reference))
    result.target(f"passthrough: 1 worker / minimal loop (median of {trials})",
                  statistics.median(ratios), 1.0, unit="x")
    result.target(f"passthrough without the changelog: 1 worker / minimal loop (median of "
                  f"{trials})", statistics.median(bare_ratios), 1.0, unit="x")
    return result


async def scale(note: Note, profile_dir: Path | None = None, events: int = 50_000,
                trials: int = TRIALS) -> ScenarioResult:
    """The passthrough backlog with ``--workers 2`` against one worker, in ``trials`` rounds
    of both in turn; the target on the median round's ratio."""
    result = ScenarioResult("scale")
    work = backlog(events, 1_000)
    member = {"CHATSTREAM_PROCESSORS": "reply", "CHATSTREAM_SESSION_SCOPE": "channel"}
    ratios: list[float] = []
    with EmbeddedBroker() as broker:
        for trial in range(1, trials + 1):
            note(f"scale {trial}/{trials}: 1 worker")
            one = await drain(broker, work, member, 180)
            note(f"scale {trial}/{trials}: 2 workers")
            two = await drain(broker, work, member, 180,
                              [*member_command(), "--workers", "2"])
            result.rows += [{"run": "1 worker", "trial": trial, **one},
                            {"run": "2 workers", "trial": trial, **two}]
            ratios.append(ratio(two, one))
    result.target(f"scale: 2 workers / 1 worker (passthrough, median of {trials})",
                  statistics.median(ratios), 1.6, unit="x")
    return result


def ratio(run: dict[str, Any], reference: dict[str, Any]) -> float:
    """``run``'s steady rate as a multiple of ``reference``'s."""
    return float(run["steady_rate"]) / max(float(reference["steady_rate"]), 1e-9)


async def io_bound(note: Note, profile_dir: Path | None = None,
                   trials: int = TRIALS) -> ScenarioResult:
    """A 20 ms I/O step over 1,000 sessions, fixed and jittered (x U(0.5, 1.5)): the concurrent
    engine against the basic path, with order violations counted per session; then the jittered
    run with ``chatstream run`` as shipped (one member per core). The concurrent runs go in
    ``trials`` rounds, the targets on each run's median rate; the basic path runs once (its rate
    is bound by the partitions and the step's time, not by the machine's load)."""
    result = ScenarioResult("io-bound")

    def env_for(engine: str, jitter: str) -> dict[str, str]:
        return {"CHATSTREAM_PROCESSORS": "reply", "CHATSTREAM_PROCESSOR_PLUGINS": _IO_PLUGIN,
                "CHATSTREAM_BENCH_IO_MS": "20", "CHATSTREAM_BENCH_IO_JITTER": jitter,
                "CHATSTREAM_MAX_IN_FLIGHT": "1000",
                "ENABLE_CONCURRENT_CONVERSATION_MANAGER": str(engine == "concurrent")}

    workers = default_workers()
    placements = [("0", 1), ("0.5", 1)] + ([("0.5", workers)] if workers > 1 else [])
    rates: dict[tuple[str, str, int], list[float]] = {}
    with EmbeddedBroker() as broker:
        for trial in range(1, trials + 1):
            engines = [("concurrent", 20_000)] + ([("basic", 2_000)] if trial == 1 else [])
            for (engine, events), (jitter, count) in itertools.product(engines, placements):
                run = (f"{engine}, 20 ms x U({1 - float(jitter):g}, {1 + float(jitter):g})"
                       + (f", {count} workers" if count > 1 else ""))
                note(f"io-bound {trial}/{trials}: {run}")
                profile = (profile_dir / "io-bound.raw.txt" if profile_dir is not None
                           and (trial, engine, jitter, count) == (1, "concurrent", "0.5", 1)
                           else None)
                figures = await drain(
                    broker, backlog(events, 1_000), env_for(engine, jitter), 120,
                    [*member_command(), "--workers", str(count)] if count > 1 else None, profile)
                result.rows.append({"run": run, "trial": trial, **figures})
                rates.setdefault((engine, jitter, count), []).append(figures["steady_rate"])
    rate = statistics.median(rates["concurrent", "0.5", 1])
    shipped_rate = statistics.median(rates["concurrent", "0.5", workers])
    median = f"median of {trials}"
    result.target(f"io-bound jittered: concurrent rate, 1 worker ({median})", rate, 10_000,
                  unit="ev/s")
    result.target(f"io-bound jittered: concurrent rate, {workers} workers ({median})",
                  shipped_rate, 10_000, unit="ev/s")
    result.target("io-bound jittered: concurrent / basic, 1 worker",
                  rate / max(rates["basic", "0.5", 1][0], 1e-9), 50, unit="x")
    # The basic path waits on each partition's step in turn, so more members do not speed it
    # up; the ratio as shipped sets both engines at the same worker count all the same.
    result.target(f"io-bound jittered: concurrent / basic, {workers} workers",
                  shipped_rate / max(rates["basic", "0.5", workers][0], 1e-9), 50, unit="x")
    result.target("io-bound: order violations (all runs)",
                  sum(row["order_violations"] for row in result.rows), 0, higher_is_better=False)
    return result


async def offered(broker: EmbeddedBroker, events: list[dict[str, Any]], rate: float,
                  env: dict[str, str], note: Note, settle_s: float = 30,
                  command: list[str] | None = None
                  ) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Run one member (or ``command``), offer ``events`` at ``rate``; send and receive times
    and costs, the broker's cores in the offer's first and last second among them (it runs
    on the same cores, and on the embedded broker a fetch costs more the more batches the
    partitions hold)."""
    settings = bench_settings(broker.bootstrap_servers)
    await preload(settings, [])
    members = Members([command or member_command()], member_env(settings, env))
    broker_pid = broker.pid
    broker_cpu = CpuTimeline(lambda: process_cpu_seconds([broker_pid] if broker_pid else []))
    async with ResponseReader(settings) as reader:
        ready = await _wait_ready(settings, members)
        workers = int(env.get("CHATSTREAM_WORKERS", "1"))
        ready = ready and await wait_for_group(settings, workers)
        note(f"offering {len(events)} events at {rate:.0f}/s (member ready: {ready})")
        sampling = asyncio.create_task(broker_cpu.run())
        try:
            with without_collections():
                sent_at = await offer(settings, events, rate)
                await reader.wait_for(len(events) + 1, settle_s, members)  # + the probe
        finally:
            sampling.cancel()
        received = dict(reader.received_at)
    run = await members.stop()
    # Whether the members had joined and the group was stable when the offer began, and how
    # they exited: a run that fails either measured something else (``incomplete_runs``).
    costs: dict[str, Any] = {"cpu_s": round(run.cpu_s, 2),
                             "peak_rss_mib": round(run.peak_rss_mib, 1), "ready": ready,
                             "exit_codes": run.exit_codes}
    if broker_pid is not None and sent_at:
        first, last = min(sent_at.values()), max(sent_at.values())
        costs["broker_cores_first_s"] = broker_cpu.cores(first, first + 1)
        costs["broker_cores_last_s"] = broker_cpu.cores(last - 1, last)
    return sent_at, received, costs


async def _wait_ready(settings: Any, members: Members, timeout_s: float = 30) -> bool:
    """Wait until the member answers a probe event (it has joined and owns partitions)."""
    probe = backlog(1, 1, seed=1)
    probe[0]["content"] = "probe"
    async with ResponseReader(settings) as reader:
        await preload(settings, probe)
        return await reader.wait_for(1, timeout_s, members)


def latency_figures(sent_at: dict[str, float], received: dict[str, float],
                    ids: list[str] | None = None) -> dict[str, float]:
    keys = [i for i in (ids if ids is not None else list(sent_at)) if i in received]
    waits = [(received[i] - sent_at[i]) * 1000 for i in keys]
    return {"answered": len(waits), "p50_ms": round(percentile(waits, 50), 1),
            "p95_ms": round(percentile(waits, 95), 1), "p99_ms": round(percentile(waits, 99), 1),
            "max_ms": round(max(waits, default=0.0), 1)}


def latency_trend(sent_at: dict[str, float], received: dict[str, float]) -> dict[str, float]:
    """p99 of the events sent in the offer's first second and in its last (an event never
    answered counts as an endless wait): on the embedded broker a fetch costs more with every
    batch the partition holds, so the same load may wait longer at the end of a run than at
    its start."""
    if not sent_at:
        return {"p99_first_s_ms": 0.0, "p99_last_s_ms": 0.0}
    first, last = min(sent_at.values()), max(sent_at.values())

    def p99(window: list[str]) -> float:
        waits = sorted((received[i] - sent_at[i]) * 1000 for i in window if i in received)
        # The unanswered ones rank last: a p99 that reaches them is endless.
        if math.ceil((len(window) - 1) * 0.99) >= len(waits):
            return math.inf
        return round(percentile(waits + [math.inf] * (len(window) - len(waits)), 99), 1)
    return {"p99_first_s_ms": p99([i for i, at in sent_at.items() if at < first + 1]),
            "p99_last_s_ms": p99([i for i, at in sent_at.items() if at > last - 1])}


_RELAY, _LOOP = "relay (two hops, nothing between)", "minimal aiokafka loop"


async def latency(note: Note, profile_dir: Path | None = None, rate: float = 2_000,
                  seconds: float = 10, trials: int = TRIALS) -> ScenarioResult:
    """The full default pipeline at 2,000 events/s offered for 10 s: latency from the bot's
    send to the response's arrival at the bot. Two references first: the relay (it forwards
    each record at once: two broker hops with nothing between them) and the minimal aiokafka
    loop (which waits for each batch's acks and its commit before the next fetch); then one
    member with only the reply step (the Kafka shell and the engine, without the analysis
    processors' CPU), one member with the full pipeline, and ``chatstream run`` as shipped (one
    member per core). One run's p99 moves by tens of milliseconds from one minute to the next
    on a shared machine, so the relay and the shipped configuration run in ``trials`` rounds
    and the target is on the shipped configuration's median p99 (each row's ratio on the
    relay's median); a round that left events unanswered has no p99, and fails the target."""
    result = ScenarioResult("latency")
    events = backlog(int(rate * seconds), 1_000, seed=11)
    offer_label = f"{rate:.0f}/s offered for {seconds:.0f} s"
    shipped = f"full pipeline, {default_workers()} worker{'s' * (default_workers() > 1)}"
    configurations: list[tuple[str, dict[str, str], list[str] | None]] = [
        (_RELAY, {}, relay_command()), (_LOOP, {}, reference_command()),
        ("reply step only, 1 worker", {"CHATSTREAM_WORKERS": "1",
                                       "CHATSTREAM_PROCESSORS": "reply"}, None),
        ("full pipeline, 1 worker", {"CHATSTREAM_WORKERS": "1"}, None)]
    if shipped != "full pipeline, 1 worker":
        configurations.append((shipped, {"CHATSTREAM_WORKERS": str(default_workers())}, None))
    p99s: dict[str, list[float | None]] = {}
    for trial in range(1, trials + 1):
        for label, env, command in configurations:
            if trial > 1 and label not in (_RELAY, shipped):
                continue
            with EmbeddedBroker() as broker:
                sent_at, received, costs = await offered(broker, events, rate, env, note,
                                                         command=command)
            figures = latency_figures(sent_at, received)
            complete = figures["answered"] == len(events)
            p99s.setdefault(label, []).append(figures["p99_ms"] if complete else None)
            result.rows.append({"run": f"{label}, {offer_label}", "trial": trial,
                                "events": len(events), **figures,
                                **latency_trend(sent_at, received), **costs})
    medians = {label: _median_or_none(found) for label, found in p99s.items()}
    for row in result.rows:
        label = str(row["run"]).removesuffix(f", {offer_label}")
        if label not in (_RELAY, _LOOP):
            p99 = row["p99_ms"] if row["answered"] == len(events) else None
            row["p99_over_relay"] = _ratio(p99, medians[_RELAY])
            row["p99_over_minimal_loop"] = _ratio(p99, medians[_LOOP])
    figure = medians[shipped]
    result.target(f"latency: p99 at 2,000 ev/s, {shipped} (median of {trials})",
                  figure if figure is not None else float("inf"), 25, higher_is_better=False,
                  unit="ms")
    return result


def _median_or_none(found: list[float | None]) -> float | None:
    """The median of ``found``; None when any is missing (a run that left events unanswered)."""
    if not found or any(value is None for value in found):
        return None
    return statistics.median(value for value in found if value is not None)


def _ratio(figure: float | None, reference: float | None) -> float | None:
    """``figure / reference``; None (an empty cell) when either is missing or zero."""
    if figure is None or not reference:
        return None
    return round(figure / reference, 2)


def default_workers() -> int:
    """Members ``chatstream run`` starts on this machine by default (one per core)."""
    return int(Settings.model_fields["workers"].default)


async def priority(note: Note, profile_dir: Path | None = None) -> ScenarioResult:
    """3x overload (a 20 ms step, 20 in flight: 1,000/s of capacity; 3,000/s offered for 4 s),
    5% critical and the rest low: critical p99 against low p99."""
    result = ScenarioResult("priority")
    events = backlog(12_000, 1_000, seed=13, critical_share=0.05)
    env = {"CHATSTREAM_PROCESSORS": "reply", "CHATSTREAM_PROCESSOR_PLUGINS": _IO_PLUGIN,
           "CHATSTREAM_BENCH_IO_MS": "20", "CHATSTREAM_MAX_IN_FLIGHT": "20",
           "CHATSTREAM_MAX_BUFFERED": "20000"}
    with EmbeddedBroker() as broker:
        sent_at, received, costs = await offered(broker, events, 3_000, env,
                                                 note, settle_s=60)
    by_level = {level: [e["event_id"] for e in events if e["priority"] == level]
                for level in ("critical", "low")}
    figures = {level: latency_figures(sent_at, received, ids) for level, ids in by_level.items()}
    for level, row in figures.items():
        result.rows.append({"run": f"{level} ({len(by_level[level])} events)",
                            "events": len(by_level[level]), **row, **costs})
    share = figures["critical"]["p99_ms"] / max(figures["low"]["p99_ms"], 1e-9)
    result.target("priority: critical p99 / low p99 under 3x overload", share, 0.1,
                  higher_is_better=False, unit="x")
    return result


async def cache(note: Note, profile_dir: Path | None = None) -> ScenarioResult:
    """Zipf-distributed conversations through the memory step (engine only): the context
    cache's hit ratio with room for a fifth of the conversations (so what it keeps matters:
    with room for all, any cache hits all but the first lookups), against a plain LRU's on
    the same sequence, and the step's latency with the cache cut to one entry."""
    from stream.devtools.bench.engine_only import memory_run

    result = ScenarioResult("cache")
    for label, size in (("cache on (200 entries, 1,000 conversations)", 200),
                        ("cache off (1 entry)", 1)):
        note(f"cache: {label}")
        result.rows.append({"run": label, **await memory_run(size)})
    result.target("cache: hit ratio on the Zipf workload", result.rows[0]["hit_ratio"], 0.7)
    return result


async def full(note: Note, profile_dir: Path | None = None, events: int = 20_000,
               trials: int = TRIALS) -> ScenarioResult:
    """Drain a backlog with every real processor (emotion, memory, thread, reply) over 1,000
    sessions and 5,000 cache entries, with one member and with ``chatstream run`` as shipped
    (one member per core), in ``trials`` rounds of both in turn: the rate targets on each run's
    median, the peak RSS of the one member on the largest of its rounds."""
    result = ScenarioResult("full")
    work = backlog(events, 1_000, seed=17)
    workers = default_workers()
    one: list[dict[str, Any]] = []
    shipped: list[dict[str, Any]] = []
    with EmbeddedBroker() as broker:
        for trial in range(1, trials + 1):
            note(f"full {trial}/{trials}: default pipeline, 1 worker")
            one.append(await drain(broker, work, {}, 150, profile=(
                profile_dir / "full.raw.txt" if profile_dir and trial == 1 else None)))
            note(f"full {trial}/{trials}: default pipeline, {workers} workers")
            shipped.append(await drain(broker, work, {}, 150,
                                       [*member_command(), "--workers", str(workers)]))
            result.rows += [{"run": "default pipeline, 1 worker", "trial": trial, **one[-1]},
                            {"run": f"default pipeline, {workers} workers", "trial": trial,
                             **shipped[-1]}]
    median = f"median of {trials}"
    result.target(f"full pipeline: drain rate, 1 worker ({median})",
                  statistics.median(run["steady_rate"] for run in one), 5_000, unit="ev/s")
    result.target(f"full pipeline: drain rate, {workers} workers ({median})",
                  statistics.median(run["steady_rate"] for run in shipped), 5_000, unit="ev/s")
    result.target("full pipeline: peak RSS of the member",
                  max(run["peak_rss_mib"] for run in one), 250, higher_is_better=False,
                  unit="MiB")
    return result


_STEPS = "stream.devtools.bench.steps"
# What a waiting step costs, layer by layer: each shape adds one thing to the one before.
_ENGINE_SHAPES: list[tuple[str, dict[str, str]]] = [
    ("reply step only (runs on the caller's stack)", {}),
    ("reply + an inline step", {"CHATSTREAM_PROCESSOR_PLUGINS": f"{_STEPS}:inline_step"}),
    ("reply + an async step that never suspends", {
        "CHATSTREAM_PROCESSOR_PLUGINS": f"{_STEPS}:instant_step"}),
    ("reply + an async step that suspends once", {
        "CHATSTREAM_PROCESSOR_PLUGINS": _IO_PLUGIN, "CHATSTREAM_BENCH_IO_MS": "0"}),
    ("reply + an async step waiting 20 ms x U(0.5, 1.5)", {
        "CHATSTREAM_PROCESSOR_PLUGINS": _IO_PLUGIN, "CHATSTREAM_BENCH_IO_MS": "20",
        "CHATSTREAM_BENCH_IO_JITTER": "0.5"}),
]


async def engine(note: Note, profile_dir: Path | None = None, events: int = 20_000,
                 trials: int = TRIALS) -> ScenarioResult:
    """The concurrent engine alone, no Kafka (``stream.devtools.bench.engine_cost``), 1,000
    sessions and 1,000 in flight, for the reply step alone and with one more step of each kind;
    ``trials`` rounds of all of them in turn, the median round's CPU per event. No target: it
    tells where a waiting step's cost goes, and compares engines steadily (no broker)."""
    result = ScenarioResult("engine")
    env = clean_env()
    env.update({"CHATSTREAM_PROCESSORS": "reply", "CHATSTREAM_MAX_IN_FLIGHT": "1000",
                "CHATSTREAM_LOG_LEVEL": "WARNING"})
    found: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in _ENGINE_SHAPES}
    for trial in range(1, trials + 1):
        for name, extra in _ENGINE_SHAPES:
            note(f"engine {trial}/{trials}: {name}")
            found[name].append(await _engine_cost(events, {**env, **extra}))
    for name, runs in found.items():
        result.rows.append({
            "run": name, "events": events, "trials": trials,
            "answered": min(run["answered"] for run in runs),
            "failed": max(run["failed"] for run in runs),
            "cpu_us_per_event": statistics.median(run["cpu_us_per_event"] for run in runs),
            "rate": statistics.median(run["rate"] for run in runs)})
    return result


async def _engine_cost(events: int, env: dict[str, str]) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream.devtools.bench.engine_cost", str(events), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(child.communicate(), timeout=180)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise
    if child.returncode != 0:
        raise RuntimeError(f"engine_cost exited with {child.returncode}")
    figures: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return figures


SCENARIOS: dict[str, Callable[..., Any]] = {
    "passthrough": passthrough, "io-bound": io_bound, "latency": latency,
    "priority": priority, "cache": cache, "scale": scale, "full": full, "engine": engine,
}
