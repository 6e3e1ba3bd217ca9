"""``chatstream send``: publish one event as a bot, optionally wait for its response."""

from __future__ import annotations

from typing import Any

from stream.botkit.client import BotClient, TopicWatcher, chat_event
from stream.settings import Settings


async def send_one(
    settings: Settings, *, bot: str, channel: str, user: str, text: str,
    priority: str | None = None, message_type: str = "message", wait: bool = False,
    timeout_s: float = 30.0,
) -> dict[str, Any] | None:
    """Publish one event; with ``wait`` return its response (TimeoutError if none in time)."""
    event = chat_event(bot, channel, user, text, priority=priority, message_type=message_type)
    if not wait:
        async with BotClient(settings) as client:
            await (await client.publish(event))
        return {"published": event}
    async with TopicWatcher(settings, from_end=True) as watcher, BotClient(settings) as client:
        await (await client.publish(event))
        return await watcher.wait_for(event["event_id"], timeout_s)
