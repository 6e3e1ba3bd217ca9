"""Isolation: nothing of one session ever shows up in another session's analysis or reply."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.cache import ContextCache
from processors.memory import MemoryProcessor
from processors.reply import ReplyProcessor
from processors.responders import TemplateResponder
from processors.thread import ThreadProcessor
from stream import create_concurrent_conversation_manager

WORDS = ["order", "delivery", "refund", "parcel", "invoice", "account", "password", "shipping"]

# (bot index, channel index, user index, word index) per message; few values so sessions collide
# on bots, channels and users (same user in two channels, same channel under two bots...).
messages = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 2), st.integers(0, 7)),
    min_size=5, max_size=40,
)


async def _run(plan: list[tuple[int, int, int, int]]) -> list[tuple[tuple[str, str, str], dict]]:
    cache = ContextCache(max_size=50, ttl_seconds=60)  # small: eviction under pressure too
    manager = await create_concurrent_conversation_manager(
        processors=[MemoryProcessor(cache), ThreadProcessor(),
                    ReplyProcessor(TemplateResponder())],
        max_in_flight=8, max_concurrent_sessions=6)
    sent = []
    for i, (bot, channel, user, word) in enumerate(plan):
        session = (f"bot{bot}", f"ch{channel}", f"user{user}")
        tag = "-".join(session)
        # Every message names its own session, so any leak is visible in related content.
        content = f"{WORDS[word]} {WORDS[(word + 1) % 8]} from {tag} number {i}"
        sent.append((session, manager.process_conversation_message(
            bot_id=session[0], channel_id=session[1], user_id=session[2], content=content)))
    responses = await asyncio.gather(*(call for _, call in sent))
    await manager.stop()
    return [(session, response.model_dump()) for (session, _), response in
            zip(sent, responses, strict=True)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_no_session_sees_another(plan):
    """Related memories, thread ids and replies only ever mention the event's own session."""
    for session, response in asyncio.run(_run(plan)):
        tag = "-".join(session)
        assert response["session_id"] == "/".join(session)
        memory = response["analysis"]["memory"]["data"]
        for related in memory["related"]:
            assert f"from {tag} " in related["content"], (tag, related)
        thread = response["analysis"]["thread"]["data"]
        assert thread["thread_id"].startswith(response["session_id"] + "#")
        for other in ("-".join((f"bot{b}", f"ch{c}", f"user{u}"))
                      for b in range(2) for c in range(3) for u in range(3)):
            if other != tag:
                assert f"from {other} " not in (response["reply"] or "")
