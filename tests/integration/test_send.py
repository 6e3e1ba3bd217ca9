"""`chatstream send`: publish one event as a bot, optionally waiting for the response."""

from __future__ import annotations

import pytest
from kafka_helpers import running_chatstream

from stream.botkit.send import send_one
from stream.kafka.topics import ensure_topics

pytestmark = pytest.mark.kafka


async def test_send_with_wait_returns_the_response(settings_for):
    """--wait prints the response to the event it just published."""
    settings = settings_for()
    async with running_chatstream(settings):
        response = await send_one(settings, bot="b", channel="c", user="u",
                                  text="my parcel never arrived, can you help?", wait=True,
                                  timeout_s=30)
        second = await send_one(settings, bot="b", channel="c", user="u",
                                text="it was the parcel from last week", wait=True, timeout_s=30)
    assert response is not None and second is not None
    assert response["bot_id"] == "b" and response["channel_id"] == "c"
    assert response["priority"] == "high"  # a direct question
    assert response["reply"]
    related = second["analysis"]["memory"]["data"]["related"]
    assert [r["event_id"] for r in related] == [response["in_reply_to"]]


async def test_send_without_wait_reports_what_was_published(settings_for):
    """Without --wait the published event is returned once the broker acknowledged it."""
    settings = settings_for()
    await ensure_topics(settings)
    result = await send_one(settings, bot="b", channel="c", user="u", text="hi", wait=False)
    assert result is not None
    assert result["published"]["content"] == "hi"
