"""Events in, responses out, on the real broker."""

from __future__ import annotations

from collections import Counter

import pytest
from kafka_helpers import by_session, collect, publish_events, running_chatstream, simulated

from schemas.events import response_id_for

pytestmark = pytest.mark.kafka


async def test_every_event_gets_exactly_one_response(settings_for):
    """300 events over dozens of sessions are each answered exactly once, with stable ids."""
    settings = settings_for()
    events = simulated(300)
    async with running_chatstream(settings):
        await publish_events(settings, events)
        watcher = await collect(settings, expected_responses=len(events))
    counts = Counter(r["in_reply_to"] for r in watcher.response_order)
    assert set(counts) == {e["event_id"] for e in events}
    assert max(counts.values()) == 1
    for event in events:
        response = watcher.responses[event["event_id"]][0]
        assert response["response_id"] == response_id_for(event["event_id"], event["bot_id"])
        assert response["channel_id"] == event["channel_id"]
        assert response["reply"], "every answered event carries a reply"


async def test_each_session_is_answered_in_order(settings_for):
    """Responses of one session appear on the response topic in the order events were sent."""
    settings = settings_for(max_in_flight=64)
    events = simulated(400, seed=3, channels=6, users_per_channel=2)
    async with running_chatstream(settings):
        await publish_events(settings, events)
        watcher = await collect(settings, expected_responses=len(events))
    answered_order = [r["in_reply_to"] for r in watcher.response_order]
    position = {event_id: i for i, event_id in enumerate(answered_order)}
    for session, sent in by_session(events).items():
        positions = [position[event_id] for event_id in sent]
        assert positions == sorted(positions), f"session {session} answered out of order"


async def test_response_key_is_the_channel(settings_for):
    """Responses are keyed by channel_id so a bot reads its channel from one partition."""
    settings = settings_for()
    events = simulated(20, seed=5)
    async with running_chatstream(settings):
        await publish_events(settings, events)
        watcher = await collect(settings, expected_responses=len(events))
    assert watcher.response_records
    for record, response in zip(watcher.response_records, watcher.response_order, strict=True):
        assert record.key == response["channel_id"].encode()
