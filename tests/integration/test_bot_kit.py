"""The bot kit: BotClient sends as a bot, awaits or streams that bot's responses, and reports a
dead-lettered event at once."""

from __future__ import annotations

import asyncio

import pytest
from kafka_helpers import running_chatstream

from schemas.codec import DecodeError
from stream.botkit.client import BotClient, DeadLettered
from stream.kafka.topics import ensure_topics

pytestmark = pytest.mark.kafka


async def test_ask_returns_the_response_to_the_event_it_sent(settings_for):
    """ask publishes keyed by channel, with a traceparent, and returns that event's response."""
    settings = settings_for()
    async with running_chatstream(settings), BotClient(settings, bot_id="b1") as bot:
        sent = await bot.send("c1", "u1", "hello there")
        response = await bot.reply_to(sent, timeout_s=30)
        second = await bot.ask("c1", "u1", "can you help me?", timeout_s=30)
    assert response["in_reply_to"] == sent.event_id and response["channel_id"] == "c1"
    assert second["bot_id"] == "b1" and second["reply"]


async def test_responses_streams_only_this_bots_answers(settings_for):
    """responses() yields the answers to this bot's events as they come, no other bot's."""
    settings = settings_for()
    async with running_chatstream(settings), BotClient(settings, bot_id="mine") as bot, \
            BotClient(settings, bot_id="other") as other:
        stream = bot.responses()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # let the stream register before anything is sent
        await other.send("c", "u", "not for you")
        sent = [await bot.send("c", "u", f"message {i}") for i in range(3)]
        received = [await asyncio.wait_for(first, 30)]
        received += [await asyncio.wait_for(anext(stream), 30) for _ in range(2)]
        await stream.aclose()
    assert [r["in_reply_to"] for r in received] == [s.event_id for s in sent]


async def test_a_dead_lettered_event_raises_with_its_reason_before_the_timeout(settings_for):
    """An event chatstream rejects (its limit is lower than the bot's) raises DeadLettered."""
    member = settings_for(max_content_chars=100)
    bot_settings = member.model_copy(update={"max_content_chars": 1000})
    async with running_chatstream(member), BotClient(bot_settings, bot_id="b") as bot:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadLettered) as caught:
            await bot.ask("c", "u", "x" * 500, timeout_s=30)
    assert loop.time() - started < 20
    assert caught.value.reason["error.stage"] == "validation"


async def test_an_event_over_the_limits_is_refused_before_it_is_sent(settings_for):
    """send checks the event against the input limits and raises DecodeError, sending nothing."""
    settings = settings_for(max_content_chars=10)
    await ensure_topics(settings)
    async with BotClient(settings, bot_id="b") as bot:
        with pytest.raises(DecodeError, match="10"):
            await bot.send("c", "u", "far too long for the limit")
    with pytest.raises(ValueError, match="bot_id"):
        await BotClient(settings).send("c", "u", "hi")
