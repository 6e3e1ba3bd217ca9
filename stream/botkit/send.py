"""``chatstream send``: publish one event as a bot, optionally wait for its response."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.codec import decode_event
from stream.botkit.client import BotClient, chat_event
from stream.settings import Settings


async def send_one(
    settings: Settings, *, bot: str, channel: str, user: str, text: str,
    priority: str | None = None, message_type: str = "message", wait: bool = False,
    timeout_s: float = 30.0,
) -> dict[str, Any] | None:
    """Publish one event; with ``wait`` return its response. Raises ``DecodeError`` before
    publishing an event chatstream would dead-letter, and with ``wait`` ``DeadLettered``
    when chatstream could not answer it, ``TimeoutError`` when no answer came in time."""
    fields = {"priority": priority, "message_type": message_type}
    if not wait:
        event = chat_event(bot, channel, user, text, **fields)
        decode_event(orjson.dumps(event), settings.input_limits)
        async with BotClient(settings) as client:
            await (await client.publish(event))
        return {"published": event}
    async with BotClient(settings, bot_id=bot) as client:
        sent = await client.send(channel, user, text, **fields)
        return await client.reply_to(sent, timeout_s)
