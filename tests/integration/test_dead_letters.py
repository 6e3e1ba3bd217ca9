"""Records that cannot become a ChatEvent go to the dead-letter topic with their reason."""

from __future__ import annotations

import orjson
import pytest
from kafka_helpers import collect, publish_events, running_chatstream, simulated

from stream.botkit.client import BotClient
from stream.kafka.dead_letter import reason_of

pytestmark = pytest.mark.kafka

GOOD = {"bot_id": "b", "channel_id": "c", "user_id": "u", "content": "hello"}

BAD_RECORDS = {
    "invalid-json": (b'{"event_id": "x", "content": ', "InvalidJSON", "json"),
    "wrong-type": (orjson.dumps({**GOOD, "event_id": 12345}), "ValidationError", "validation"),
    "number-as-content": (orjson.dumps({**GOOD, "event_id": "n", "content": 7}),
                          "ValidationError", "validation"),
    "missing-fields": (orjson.dumps({"event_id": "m", "content": "hi"}),
                       "ValidationError", "validation"),
    "oversize-content": (orjson.dumps({**GOOD, "event_id": "o", "content": "x" * 5000}),
                         "ValidationError", "validation"),
    "not-an-object": (b"[1, 2, 3]", "NotAnObject", "validation"),
    "empty": (b"", "EmptyValue", "json"),
}


async def test_malformed_records_are_dead_lettered_with_reason(settings_for):
    """Each malformed record lands in the DLQ unchanged, with type, message, stage and source."""
    settings = settings_for(partitions=1)
    good_before, good_after = simulated(10, seed=11), simulated(10, seed=12)
    async with running_chatstream(settings):
        await publish_events(settings, good_before)
        async with BotClient(settings) as client:
            for name, (value, _, _) in BAD_RECORDS.items():
                await (await client.publish_raw(value, key=name.encode()))
        await publish_events(settings, good_after)
        watcher = await collect(settings, expected_responses=20,
                                expected_dead_letters=len(BAD_RECORDS))
    assert len(watcher.response_order) == 20
    assert len(watcher.dead_letters) == len(BAD_RECORDS)
    for record in watcher.dead_letters:
        name = record.key.decode()
        value, error_type, stage = BAD_RECORDS[name]
        reason = reason_of(record.headers)
        assert record.value == (value or None) or record.value == value
        assert reason["error.type"] == error_type
        assert reason["error.stage"] == stage
        assert reason["error.message"]
        assert reason["source.topic"] == settings.inbound_topic
        assert reason["source.partition"] == "0"
        assert int(reason["source.offset"]) >= 10


async def test_oversize_reason_names_the_limit(settings_for):
    """The DLQ reason of oversize content states the size and the configured limit."""
    settings = settings_for(max_content_chars=100)
    async with running_chatstream(settings):
        async with BotClient(settings) as client:
            value = orjson.dumps({**GOOD, "event_id": "big", "content": "y" * 101})
            await (await client.publish_raw(value, key=b"c"))
        watcher = await collect(settings, expected_responses=0, expected_dead_letters=1)
    message = reason_of(watcher.dead_letters[0].headers)["error.message"]
    assert "101" in message and "100" in message
