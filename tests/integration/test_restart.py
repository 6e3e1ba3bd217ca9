"""A restarted processor resumes from the committed offsets: nothing lost, nothing repeated."""

from __future__ import annotations

from collections import Counter

import pytest
from kafka_helpers import collect, publish_events, running_chatstream, simulated

pytestmark = pytest.mark.kafka


async def test_restart_resumes_without_loss_or_duplicates(settings_for):
    """Events sent while the processor is down are answered after restart, earlier ones not again."""
    settings = settings_for()
    first, while_down, after = simulated(150, seed=21), simulated(100, seed=22), simulated(50, seed=23)
    async with running_chatstream(settings) as runner:
        await publish_events(settings, first)
        await collect(settings, expected_responses=len(first))
    assert runner.counters.answered == len(first)
    await publish_events(settings, while_down)
    async with running_chatstream(settings) as runner:
        await publish_events(settings, after)
        watcher = await collect(settings, expected_responses=300)
    assert runner.counters.answered == len(while_down) + len(after)
    counts = Counter(r["in_reply_to"] for r in watcher.response_order)
    assert set(counts) == {e["event_id"] for e in first + while_down + after}
    assert max(counts.values()) == 1
