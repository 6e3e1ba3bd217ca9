"""A backlog is taken from every partition in turn, on the real broker.

A member that starts on a backlog (after a restart, or scaled out behind a burst) admits what
its fetches hold. Were it to take one partition's records until that partition's fetch was
through (a fetch holds a megabyte of each, and a producer's batch comes whole), only that
partition's sessions would run meanwhile, and the others would wait with work to do.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import pytest
from kafka_helpers import by_session, collect, publish_events, running_chatstream

from stream.app.wiring import build_engine
from stream.kafka.topics import ensure_topics
from stream.settings import Settings

pytestmark = pytest.mark.kafka

PARTITIONS = 8
CHANNELS = 64
EVENTS_PER_CHANNEL = 40
CONTENT = "a long message " * 130  # ~2 KB: a partition's backlog is ~650 KB


def backlog() -> list[dict[str, Any]]:
    return [{"event_id": f"e-{turn}-{channel}", "bot_id": "b", "channel_id": f"c{channel}",
             "user_id": f"u{channel}", "content": f"{turn}: {CONTENT}"}
            for turn in range(EVENTS_PER_CHANNEL) for channel in range(CHANNELS)]


def admitting(settings: Settings, admitted: list[int]):  # type: ignore[no-untyped-def]
    """An engine factory whose engine notes the partition of every event it admits."""

    def factory(sink):  # type: ignore[no-untyped-def]
        engine = build_engine(settings, sink)
        submit = engine.submit

        def noting(event, source=None, **rest):  # type: ignore[no-untyped-def]
            admitted.append(source.tp.partition)
            return submit(event, source=source, **rest)

        engine.submit = noting  # type: ignore[method-assign]
        return engine

    return factory


async def test_a_backlog_is_admitted_from_every_partition_in_turn(settings_for):
    """A backlog published in large batches before the member starts is admitted in short
    runs of each partition's records (``take_in_turn``: a share of ``max_poll_records`` from
    each partition per fetch), not one partition's fetch after another's; every event is
    still answered once, each session in order."""
    settings = settings_for(partitions=PARTITIONS, builtin_processors="reply")
    events = backlog()
    await ensure_topics(settings)
    await publish_events(settings, events)  # batches of up to 256 KiB, ~100 records each
    admitted: list[int] = []
    async with running_chatstream(settings, engine_factory=admitting(settings, admitted)):
        outputs = await collect(settings, expected_responses=len(events))
    runs = [len(list(run)) for _, run in itertools.groupby(admitted)]
    one_partition = len(events) // PARTITIONS
    assert statistics.median(runs) <= one_partition / 4, (
        f"runs of one partition's records as admitted: {runs}")
    assert len(admitted) >= len(events)
    assert {r["in_reply_to"] for r in outputs.response_order} == {e["event_id"] for e in events}
    position = {r["in_reply_to"]: i for i, r in enumerate(outputs.response_order)}
    for session, sent in by_session(events).items():
        assert [position[e] for e in sent] == sorted(position[e] for e in sent), session
