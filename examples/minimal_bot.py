"""The smallest bot: send one message to chatstream and print the reply.

    chatstream broker &                 # the embedded broker on 127.0.0.1:9092
    chatstream topics ensure
    chatstream run &
    python examples/minimal_bot.py "hello, is anyone there?"

Settings come from the environment, as chatstream's own do (KAFKA_BOOTSTRAP_SERVERS,
CHATSTREAM_INBOUND_TOPIC, CHATSTREAM_RESPONSE_TOPIC...). Prints the reply and exits 0; prints
one line on stderr and exits 1 when there is no reply (dead-lettered, timed out, no broker).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka.errors import KafkaError

from schemas.codec import DecodeError
from stream.botkit.client import BotClient, DeadLettered
from stream.settings import SettingsError, load_settings


async def talk(text: str, *, channel: str, user: str, timeout_s: float) -> str:
    """Send ``text`` as bot ``minimal-bot`` and return chatstream's reply."""
    async with BotClient(load_settings(), bot_id="minimal-bot") as bot:
        # Keyed by the channel, traced, checked against the input limits before it is sent.
        response = await bot.ask(channel, user, text, timeout_s=timeout_s)
    return str(response["reply"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send one message to chatstream, print the reply.")
    parser.add_argument("text", nargs="?", default="hello, is anyone there?")
    parser.add_argument("--channel", default="example-channel")
    parser.add_argument("--user", default="example-user")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(talk(args.text, channel=args.channel, user=args.user,
                               timeout_s=args.timeout)))
    except TimeoutError:
        print(f"minimal_bot: no reply within {args.timeout}s; is `chatstream run` running?",
              file=sys.stderr)
        return 1
    except (SettingsError, DecodeError, DeadLettered, KafkaError, RuntimeError) as exc:
        print(f"minimal_bot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
