"""Helpers for tests against the real broker: run chatstream in-process, publish, collect."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from stream.app.wiring import build_engine
from stream.botkit.client import BotClient, TopicWatcher
from stream.devtools.bots import chat_events
from stream.kafka.member import EngineFactory, StreamRunner
from stream.kafka.topics import ensure_topics
from stream.settings import Settings


@contextlib.asynccontextmanager
async def running_chatstream(settings: Settings, ready_timeout_s: float = 30.0,
                             engine_factory: EngineFactory | None = None,
                             ) -> AsyncIterator[StreamRunner]:
    """A chatstream group member in this event loop; stopped gracefully on exit."""
    await ensure_topics(settings)
    stop = asyncio.Event()
    runner = StreamRunner(settings, engine_factory or (
        lambda sink: build_engine(settings, sink)))
    task = asyncio.create_task(runner.run(stop))
    ready = asyncio.create_task(runner.ready.wait())
    await asyncio.wait({task, ready}, timeout=ready_timeout_s,
                       return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what made it stop
    if not ready.done():
        ready.cancel()
        stop.set()
        await task
        raise TimeoutError("chatstream did not get partitions assigned in time")
    try:
        yield runner
    finally:
        stop.set()
        await task


async def publish_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    async with BotClient(settings) as client:
        acks = [await client.publish(event) for event in events]
        await asyncio.gather(*acks)


def simulated(count: int, seed: int = 1, **world: Any) -> list[dict[str, Any]]:
    return list(chat_events(seed=seed, count=count, **world))


async def collect(settings: Settings, expected_responses: int, expected_dead_letters: int = 0,
                  timeout_s: float = 60.0) -> TopicWatcher:
    """Read both output topics from the beginning until the expected counts arrive (or time out).

    Lingers briefly afterwards so that unexpected extra records (duplicates) are seen too.
    """
    async with TopicWatcher(settings) as watcher:
        await watcher.wait_until(
            lambda: len(watcher.response_order) >= expected_responses
            and len(watcher.dead_letters) >= expected_dead_letters, timeout_s)
        await asyncio.sleep(0.5)
    return watcher


def by_session(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """Event ids of each (bot, channel, user) session in publish order."""
    sessions: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for event in events:
        sessions[(event["bot_id"], event["channel_id"], event["user_id"])].append(event["event_id"])
    return sessions
