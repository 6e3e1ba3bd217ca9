"""Crash: workers SIGKILLed mid-stream and restarted lose nothing and duplicate only what was in
flight (answered, not yet committed) at the moment of a kill."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from workers import (
    OutputReader,
    SendLog,
    Worker,
    analyse,
    committed_offsets,
    produce,
    settle,
    until,
)

from stream.devtools.bots import chat_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

EVENTS = 1500
RATE = 100.0  # events per second: ~15 s of load
KILL_AT = (300, 700, 1100)  # events sent when a worker is killed


@dataclass
class Kill:
    victim: str
    at_event: int
    dead_at: float  # wall clock, seconds
    committed: dict[int, int]  # the group's commits right after the death


async def test_sigkill_and_restart_lose_nothing_and_bound_duplicates(pool_factory):
    """Three SIGKILLs of group members under load: every event answered, each session's first
    answers in send order, and every duplicate is an event that was answered but not committed
    when a worker died, carrying the same response id as its first answer."""
    pool = await pool_factory(partitions=8)
    settings = pool.settings
    members: list[Worker] = [pool.spawn("a"), pool.spawn("b")]
    for member in members:
        await member.wait_ready()
    kills: list[Kill] = []

    async def chaos(sent_so_far: int) -> None:
        if sent_so_far not in KILL_AT:
            return
        slot = len(kills) % 2
        victim = members[slot]
        dead_at = await victim.kill()
        kills.append(Kill(victim.name, sent_so_far, dead_at, await committed_offsets(settings)))
        members[slot] = pool.spawn(f"{victim.name}-restarted-{len(kills)}")

    started = time.monotonic()
    async with OutputReader(settings) as reader:
        sent = await produce(settings, chat_events(seed=101, count=EVENTS, channels=40),
                             rate=RATE, on_progress=chaos)
        expected = {event["event_id"] for event in sent.events}
        await until(lambda: expected <= reader.answered_ids(), 90,
                    f"every event answered\n{pool.logs()}")
        await settle(settings, reader, sent)
        figures = analyse(sent, reader)
    elapsed = time.monotonic() - started

    candidates = _in_flight_at_kills(sent, figures.first_answer, kills)
    outside = [eid for eid in figures.duplicated_ids if eid not in candidates]
    print(f"\n[crash] {len(kills)} SIGKILLs at events {KILL_AT}: {figures.line()}; "
          f"answered-but-uncommitted at the kills {len(candidates)}; {elapsed:.1f} s")
    assert len(kills) == len(KILL_AT)
    assert figures.lost == [], f"lost {len(figures.lost)}"
    assert figures.unexpected == []
    assert figures.order_violations == 0
    assert figures.mismatched_response_ids == []
    assert outside == [], f"{len(outside)} duplicates were not in flight at any kill"
    # The bound itself. How many that is depends on how far behind a loaded machine runs at
    # the kills (about 1% of the events on an idle 2-core machine, 10% with two extra busy
    # processes), so the share is printed, not asserted.
    assert figures.duplicates <= len(candidates)
    for member in members:
        assert member.alive(), member.log_tail()


def _in_flight_at_kills(sent: SendLog, first_answer: dict, kills: list[Kill]) -> set[str]:  # type: ignore[type-arg]
    """Events answered before some kill whose offsets the group had not committed at it."""
    found = set()
    for kill in kills:
        for event_id, (partition, offset) in sent.where.items():
            answer = first_answer.get(event_id)
            if (answer is not None and answer.timestamp_ms <= kill.dead_at * 1000
                    and offset >= kill.committed.get(partition, -1)):
                found.add(event_id)
    return found
