"""`chatstream send`: publish one event as a bot, optionally waiting for the response."""

from __future__ import annotations

import pytest
from kafka_helpers import read_to_end, running_chatstream

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


async def test_send_with_wait_reports_a_dead_letter_at_once(settings_for):
    """An event the running member dead-letters (its limits are stricter than the sender's)
    ends the wait with the reason, not a timeout."""
    import asyncio
    import time

    from stream.botkit.replies import DeadLettered

    strict = settings_for(max_content_chars=10)
    sender = strict.model_copy(update={"max_content_chars": 4000})
    async with running_chatstream(strict):
        started = time.monotonic()
        with pytest.raises(DeadLettered, match="the limit is 10"):
            await asyncio.wait_for(send_one(sender, bot="b", channel="c", user="u",
                                            text="a message of some length", wait=True,
                                            timeout_s=60), 90)
    assert time.monotonic() - started < 60  # not the response's timeout


def test_send_refuses_what_chatstream_would_dead_letter_before_connecting():
    """Too long for the input limits: one line, exit 2, and no broker is asked (there is none
    at that address)."""
    result = _chatstream("send", "x" * 5_000)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "chatstream send: not published, chatstream would dead-letter it: validation: "
        "ValidationError: content: content has 5000 characters, the limit is 4000"]


@pytest.mark.parametrize("command", [("send", "hello"), ("send", "--wait", "hello"),
                                     ("topics", "ensure"), ("dlq", "inspect"),
                                     ("dlq", "replay", "--dry-run")])
def test_an_unreachable_broker_is_one_line_and_exit_1(command):
    result = _chatstream(*command)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"chatstream {command[0]}")
    assert "cannot reach the brokers at 127.0.0.1:9" in lines[0]


async def test_send_opens_the_events_trace_when_otel_asks_for_export(settings_for):
    """The bot's publish is the trace's first span: exported (to the console here) under the
    command's own service name, and its context travels in the record's headers, where the
    member's process span picks it up."""
    import asyncio

    settings = settings_for()
    await ensure_topics(settings)
    result = await asyncio.to_thread(
        _chatstream, "send", "trace me", KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        CHATSTREAM_INBOUND_TOPIC=settings.inbound_topic, OTEL_TRACES_EXPORTER="console")
    assert result.returncode == 0, result.stderr
    assert '"name": "send chat.inbound"' in result.stdout
    assert '"service.name": "chatstream-send"' in result.stdout
    (record,) = await read_to_end(settings, settings.inbound_topic)
    headers = dict(record.headers)
    trace_id = headers["traceparent"].decode().split("-")[1]
    assert f'"trace_id": "0x{trace_id}"' in result.stdout


def test_send_refuses_an_otel_setting_it_cannot_use():
    result = _chatstream("send", "hi", OTEL_TRACES_EXPORTER="bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("chatstream send: ") and "bogus" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def _chatstream(*args: str, **env: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", "from stream.app.cli import main; main()", *args],
        env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=120)
