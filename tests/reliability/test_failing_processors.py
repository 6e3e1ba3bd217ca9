"""Failing processors (a plugin that raises, hangs and has an outage) degrade answers instead of
losing them; retries, timeouts and the circuit breaker are visible in the responses."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from workers import RELIABILITY_DIR, OutputReader, analyse, produce, settle, until

from stream.devtools.bots import chat_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

EVENTS = 1000
RATE = 120.0
COOLDOWN_S = 1.0


def _stamp(response: dict) -> datetime:  # type: ignore[type-arg]
    return datetime.fromisoformat(response["processed_at"])


async def test_flaky_plugin_processors_degrade_but_never_lose_answers(pool_factory):
    """With a plugin failing 40 % of calls and another failing everything for 2 s: every event
    is answered, each failed step is named in `degraded`, transient errors are retried, and the
    stormy step's breaker opens (status skipped) and closes again after the cool-down."""
    pool = await pool_factory(partitions=8)
    settings = pool.settings
    worker = pool.spawn(
        "flaky",
        CHATSTREAM_PROCESSOR_PLUGINS="flaky_plugin:processors",
        PYTHONPATH=str(RELIABILITY_DIR),
        CHATSTREAM_PROCESSOR_RETRIES="2",
        CHATSTREAM_CIRCUIT_FAILURE_THRESHOLD="5",
        CHATSTREAM_CIRCUIT_COOLDOWN_SECONDS=str(COOLDOWN_S),
    )
    await worker.wait_ready()
    async with OutputReader(settings) as reader:
        sent = await produce(settings, chat_events(seed=606, count=EVENTS, channels=40),
                             rate=RATE)
        expected = {event["event_id"] for event in sent.events}
        await until(lambda: expected <= reader.answered_ids(), 60,
                    f"every event answered\n{pool.logs()}")
        await settle(settings, reader, sent)
        figures = analyse(sent, reader)
    responses = [figures.first_answer[event["event_id"]].response for event in sent.events]

    flaky = Counter(r["analysis"]["flaky"]["status"] for r in responses)
    retried = sum(r["analysis"]["flaky"]["attempts"] > 1 for r in responses)
    rescued = sum(r["analysis"]["flaky"]["attempts"] > 1 and r["analysis"]["flaky"]["status"] == "ok"
                  for r in responses)
    inconsistent = [r["in_reply_to"] for r in responses if sorted(r["degraded"]) != sorted(
        name for name, outcome in r["analysis"].items() if outcome["status"] != "ok")]
    storm = sorted((_stamp(r), r["analysis"]["storm"]["status"]) for r in responses)
    skipped_at = [at for at, status in storm if status == "skipped"]
    storm_counts = Counter(status for _, status in storm)
    executed = EVENTS - flaky["skipped"]
    print(f"\n[flaky] {figures.line()}; flaky outcomes {dict(flaky)} (failure share of "
          f"executed calls {(flaky['failed'] + flaky['timeout']) / max(executed, 1):.2f}), retried {retried} "
          f"(rescued by a retry {rescued}); storm outcomes {dict(storm_counts)}, breaker open "
          f"{(skipped_at[-1] - skipped_at[0]).total_seconds() if skipped_at else 0:.1f} s; "
          f"degraded {sum(bool(r['degraded']) for r in responses)}")
    assert figures.lost == [] and figures.duplicates == 0, figures.line()
    assert all(r["reply"] for r in responses), "a degraded answer still has a reply"
    assert inconsistent == [], f"degraded does not name exactly the failed steps: {inconsistent[:5]}"
    assert flaky["failed"] > 0 and flaky["timeout"] > 0 and flaky["ok"] > 0
    failure_share = (flaky["failed"] + flaky["timeout"]) / executed
    assert 0.15 < failure_share < 0.45, f"failure share {failure_share:.2f} of executed calls"
    assert retried > 0 and rescued > 0
    assert skipped_at, "the storm never opened the breaker"
    assert any(status == "ok" and at > skipped_at[-1] for at, status in storm), \
        "the breaker never closed again"
    assert storm[-1][1] == "ok"
    assert worker.alive()
