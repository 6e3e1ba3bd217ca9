"""Simulated chat bots: multi-turn conversations across bots, channels and users.

Used by ``chatstream demo`` and ``chatstream bench``. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BOTS = ("discord-helper", "slack-concierge", "webchat-support")

_OPENERS = (
    "hi there, I have a question about my order",
    "hello! can you help me set up notifications?",
    "good morning, my account shows the wrong plan",
    "hey, what are your opening hours this weekend?",
    "I'd like to change the delivery address for my parcel",
)
_FOLLOW_UPS = (
    "it was placed last tuesday with express shipping",
    "the notifications used to work on my phone",
    "I upgraded to the premium plan two weeks ago",
    "thanks, that is really helpful!",
    "can you check the delivery address again?",
    "how long does the express shipping usually take?",
    "I love how quick this was, great service",
    "anyway, unrelated: do you ship to Canada?",
)
_EMOTIONAL = (
    "this is the third time it failed, I am really frustrated and angry",
    "honestly this is terrible, nothing works and nobody answers",
    "I'm so disappointed, I waited all week for this",
)
_URGENT = (
    "URGENT: my account was hacked and someone is making payments right now!!!",
    "emergency, please help me now, I'm locked out and my payment is failing",
    "I need this fixed immediately, it is a disaster and I am furious",
)
_SYSTEM = ("user joined the channel", "channel topic changed", "bot restarted")


@dataclass(frozen=True, slots=True)
class Conversation:
    bot_id: str
    channel_id: str
    user_id: str


def conversations(seed: int, bots: int = 3, channels: int = 36,
                  users_per_channel: int = 3) -> list[Conversation]:
    """Every (bot, channel, user) triple of the simulated world."""
    rng = random.Random(seed)
    result = []
    for channel_no in range(channels):
        bot = BOTS[channel_no % min(bots, len(BOTS))]
        channel = f"{bot.split('-')[0]}-ch-{channel_no:03d}"
        for user_no in range(users_per_channel):
            result.append(Conversation(bot, channel, f"user-{rng.randrange(10_000):04d}-{user_no}"))
    return result


def _content(turn: int, rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(_URGENT), "message"
    if roll < 0.10:
        return rng.choice(_EMOTIONAL), "message"
    if roll < 0.13:
        return rng.choice(_SYSTEM), "system"
    if roll < 0.20:
        return "@bot " + rng.choice(_FOLLOW_UPS), "mention"
    if turn == 0:
        return rng.choice(_OPENERS), "message"
    return rng.choice(_FOLLOW_UPS), "message"


def chat_events(seed: int, count: int, **world: Any) -> Iterator[dict[str, Any]]:
    """``count`` inbound events as JSON-ready dicts, conversations interleaved at random."""
    rng = random.Random(seed)
    people = conversations(seed, **world)
    turns: dict[Conversation, int] = {}
    for _ in range(count):
        who = rng.choice(people)
        turn = turns.get(who, 0)
        turns[who] = turn + 1
        content, message_type = _content(turn, rng)
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "bot_id": who.bot_id,
            "channel_id": who.channel_id,
            "user_id": who.user_id,
            "content": content,
            "message_type": message_type,
            "timestamp": datetime.now(UTC).isoformat(),
            "metadata": {"turn": turn, "simulated": True},
        }


def event_for(bot_id: str, channel_id: str, user_id: str, content: str, **fields: Any
              ) -> dict[str, Any]:
    """One inbound event as a bot would publish it."""
    return {
        "event_id": str(uuid.uuid4()),
        "bot_id": bot_id,
        "channel_id": channel_id,
        "user_id": user_id,
        "content": content,
        "timestamp": datetime.now(UTC).isoformat(),
        **{k: v for k, v in fields.items() if v is not None},
    }
