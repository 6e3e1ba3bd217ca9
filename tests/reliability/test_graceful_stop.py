"""Graceful stop: SIGTERM under load drains, commits and exits 0 in time; a successor resumes
where it stopped: exactly when the drain finished, at least once (duplicates bounded by what
was answered but not committed) when the shutdown timeout cut the drain short."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest
from workers import (
    RELIABILITY_DIR,
    STOP_MARGIN_S,
    Figures,
    OutputReader,
    SendLog,
    WorkerPool,
    analyse,
    committed_offsets,
    produce,
    rate_capped,
    settle,
    until,
)

from stream.devtools.bots import chat_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

AFTER = 300  # events sent while the successor runs


@dataclass
class StopRun:
    code: int | None
    stop_s: float
    backlog_at_signal: int
    consumed: int
    answered: int
    dead_at: float
    committed: dict[int, int]
    sent: SendLog
    figures: Figures


def _final_counters(log: str) -> tuple[int, int]:
    found = re.findall(r"chatstream stopped: (\d+) consumed, (\d+) answered", log)
    assert found, "the worker did not log its final counters"
    return int(found[-1][0]), int(found[-1][1])


async def _stop_under_load(pool: WorkerPool, backlog: int, shutdown_timeout_s: float,
                           seed: int, **extra_env: str) -> StopRun:
    settings = pool.settings
    env = {"CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS": str(shutdown_timeout_s), **extra_env}
    worker = pool.spawn("stopped", **env)
    await worker.wait_ready()
    events = list(chat_events(seed=seed, count=backlog + AFTER, channels=40))
    async with OutputReader(settings) as reader:
        sent = await produce(settings, events[:backlog])
        await until(lambda: len(reader.answers) >= 200, 30, "the worker to answer 200 events")
        before = await worker.stats()
        code, stop_s = await worker.terminate(timeout_s=shutdown_timeout_s + 15)
        dead_at = time.time()
        committed = await committed_offsets(settings)
        consumed, answered = _final_counters(worker.log_text())
        successor = pool.spawn("successor", **env)
        await successor.wait_ready()
        sent = await produce(settings, events[backlog:], log=sent)
        expected = {event["event_id"] for event in sent.events}
        await until(lambda: expected <= reader.answered_ids(), 60,
                    f"every event answered\n{pool.logs()}")
        await settle(settings, reader, sent)
        figures = analyse(sent, reader)
    backlog_at_signal = sum(before["kafka"]["lag"].values()) if before else 0
    return StopRun(code, stop_s, backlog_at_signal, consumed, answered, dead_at, committed,
                   sent, figures)


def _report(label: str, run: StopRun, timeout_s: float) -> None:
    print(f"\n[graceful/{label}] SIGTERM with a backlog of {run.backlog_at_signal}: exit "
          f"{run.code} in {run.stop_s:.2f} s (limit {timeout_s + STOP_MARGIN_S:.0f} s); the stopped "
          f"worker consumed {run.consumed}, answered {run.answered}; {run.figures.line()}")


async def test_sigterm_with_time_to_drain_exits_cleanly_without_duplicates(pool_factory):
    """SIGTERM with a backlog the worker can drain within the 5 s default: exit code 0 in time,
    everything the stopped worker took is answered and committed, so the successor answers
    only the rest (what it had not fetched yet, then what came later): nothing lost, nothing
    answered twice. How much of the backlog one fetch brought before the signal is the
    machine's timing (500 records a fetch), so it is not asserted."""
    pool = await pool_factory(partitions=8)
    # Unthrottled, a worker can answer all 1,000 before the signal reaches it. A 40 ms step with
    # 16 in flight caps it at 400 events/s on any machine: the 800 left after the first 200
    # answers take at least 2 s, so some are still there at the signal, and at most 2 s, well
    # inside the 5 s drain.
    run = await _stop_under_load(pool, backlog=1000, shutdown_timeout_s=5.0, seed=303,
                                 **rate_capped(step_ms=40, in_flight=16))
    _report("drained", run, 5.0)
    assert run.code == 0
    assert run.stop_s <= 5.0 + STOP_MARGIN_S
    assert run.backlog_at_signal > 0, "the worker was idle when stopped: nothing was tested"
    assert run.answered == run.consumed >= 200
    assert run.figures.lost == []
    assert run.figures.duplicates == 0, f"duplicated: {run.figures.duplicated_ids[:10]}"
    assert run.figures.order_violations == 0


async def test_sigterm_cut_short_by_the_timeout_only_repeats_uncommitted_answers(pool_factory):
    """SIGTERM with more backlog than a 2 s shutdown timeout can drain: exit 0 in time, nothing
    lost, order kept, and every duplicate is an event answered before the stop but above the
    committed watermark, with the same response id."""
    pool = await pool_factory(partitions=8)
    # A 100 ms step with 16 in flight caps the worker at 160 events/s on any machine: the 2 s
    # drain and its grace answer at most about 450, so even a signal coming seconds after the
    # first 200 answers leaves well over a thousand of the 2,500.
    run = await _stop_under_load(pool, backlog=2500, shutdown_timeout_s=2.0, seed=313,
                                 **rate_capped(step_ms=100, in_flight=16))
    figures = run.figures
    repeatable = {
        event_id for event_id, (partition, offset) in run.sent.where.items()
        if (answer := figures.first_answer.get(event_id)) is not None
        and answer.timestamp_ms <= run.dead_at * 1000
        and offset >= run.committed.get(partition, -1)
    }
    _report("cut short", run, 2.0)
    print(f"[graceful/cut short] answered above the committed watermark at the stop: "
          f"{len(repeatable)}")
    assert run.code == 0
    assert run.stop_s <= 2.0 + STOP_MARGIN_S
    assert run.answered < run.consumed, "the drain finished: the timeout was not exercised"
    assert figures.lost == []
    assert figures.order_violations == 0
    assert figures.mismatched_response_ids == []
    assert set(figures.duplicated_ids) <= repeatable


async def test_sigterm_exits_in_time_while_a_step_is_stuck_in_its_thread(pool_factory):
    """A THREAD step that never returns timed out long ago and still holds its worker thread:
    the stop drains and commits as usual, and the process exits 0 in time instead of waiting
    for that thread at interpreter exit."""
    pool = await pool_factory(partitions=2)
    settings = pool.settings
    worker = pool.spawn("stuck", CHATSTREAM_PROCESSOR_PLUGINS="flaky_plugin:stuck",
                        PYTHONPATH=str(RELIABILITY_DIR), CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS="2")
    await worker.wait_ready()
    async with OutputReader(settings) as reader:
        sent = await produce(settings, chat_events(seed=818, count=20, channels=4))
        await settle(settings, reader, sent)
        figures = analyse(sent, reader)
    statuses = [figures.first_answer[e["event_id"]].response["analysis"]["stuck"]["status"]
                for e in sent.events]
    code, stop_s = await worker.terminate(timeout_s=30)
    print(f"\n[stop/stuck step] {figures.line()}; stuck step outcomes "
          f"{sorted(set(statuses))}; exit {code} in {stop_s:.2f} s")
    assert figures.lost == [] and statuses.count("timeout") == 1
    assert code == 0, worker.log_tail()
    assert stop_s <= 2.0 + STOP_MARGIN_S
    assert "steps still running" in worker.log_tail()
