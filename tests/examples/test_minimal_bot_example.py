"""examples/minimal_bot.py against the real broker: it prints chatstream's reply, or says in
one line why there is none."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from kafka_helpers import collect, running_chatstream

from stream.kafka.topics import ensure_topics
from stream.settings import Settings

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


async def _run_bot(settings: Settings, *args: str, timeout_s: float = 60.0
                   ) -> tuple[int, str, str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "CHATSTREAM_INBOUND_TOPIC": settings.inbound_topic,
           "CHATSTREAM_RESPONSE_TOPIC": settings.response_topic,
           "CHATSTREAM_DLQ_TOPIC": settings.dlq_topic}
    # Not subprocess.run: the chatstream member under test runs on this event loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "minimal_bot.py"), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_bot_prints_the_reply_chatstream_sent(settings_for):
    """The example sends one message through the bot kit and prints the response's reply."""
    settings = settings_for()
    async with running_chatstream(settings):
        code, out, err = await _run_bot(settings, "my parcel never arrived, can you help?",
                                        "--timeout", "30")
        watcher = await collect(settings, expected_responses=1, timeout_s=15)
    assert code == 0, err
    [response] = watcher.response_order
    assert response["bot_id"] == "minimal-bot" and response["channel_id"] == "example-channel"
    assert out.strip() == response["reply"]


async def test_without_chatstream_running_it_says_so_and_exits_1(settings_for):
    """No member answering: one line on stderr naming the wait, exit status 1."""
    settings = settings_for()
    await ensure_topics(settings)
    code, out, err = await _run_bot(settings, "anyone?", "--timeout", "2")
    assert code == 1 and out == ""
    assert "no reply within 2.0s" in err and "Traceback" not in err
