"""The `chatstream dlq` commands, driven through the command line on the real broker."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from dlq_fixtures import Letter, write_letters
from kafka_helpers import read_to_end
from typer.testing import CliRunner

from stream.app.cli import StageChoice, app
from stream.kafka.topics import ensure_topics
from stream.ops.dlq import STAGES
from stream.settings import Settings

pytestmark = pytest.mark.kafka

LETTERS = [Letter(b"a", b'{"x": 1}', "validation", "ValidationError", partition=0),
           Letter(b"b", b"{", "json", "InvalidJSON", partition=1),
           Letter(b"c", None, "publish", "MessageSizeTooLargeError", partition=2, dropped=True)]


def _env(settings: Settings) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "CHATSTREAM_INBOUND_TOPIC": settings.inbound_topic,
            "CHATSTREAM_RESPONSE_TOPIC": settings.response_topic,
            "CHATSTREAM_DLQ_TOPIC": settings.dlq_topic}


def _run(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["dlq", *args], env=_env(settings))
    return result.exit_code, result.output


@pytest.fixture
def letters_on_broker(settings_for) -> Settings:  # type: ignore[no-untyped-def]
    """A test's topics with LETTERS in the dead-letter topic."""
    settings: Settings = settings_for()

    async def prepare() -> None:
        await ensure_topics(settings)
        await write_letters(settings, LETTERS)

    asyncio.run(prepare())
    return settings


def test_stage_choices_are_the_stages_chatstream_writes():
    """--stage offers exactly the stages dead letters can carry."""
    assert tuple(choice.value for choice in StageChoice) == STAGES


def test_inspect_prints_counts_and_latest_as_text_and_json(letters_on_broker):
    """inspect shows totals, per-stage counts and the latest records; --json the same data."""
    code, text = _run(letters_on_broker, "inspect", "--limit", "2")
    assert code == 0, text
    assert text.startswith(f"dead letters in {letters_on_broker.dlq_topic}: 3 (0 replayed)")
    assert "validation 1" in text and "latest 2:" in text
    code, raw = _run(letters_on_broker, "inspect", "--json")
    data = orjson.loads(raw)
    assert data["total"] == 3 and data["complete"] is True
    assert data["by_error_type"] == {"ValidationError": 1, "InvalidJSON": 1,
                                     "MessageSizeTooLargeError": 1}
    assert {item["key"] for item in data["latest"]} == {"a", "b", "c"}


def test_replay_once_then_refuse_then_force(letters_on_broker):
    """replay publishes once and says so; a second run skips; --force replays again."""
    settings = letters_on_broker
    code, dry = _run(settings, "replay", "--dry-run")
    assert code == 0 and "would replay 2, skipped 1" in dry
    code, first = _run(settings, "replay")
    assert code == 0, first
    assert first.count("replayed dlq-") == 2
    assert "cannot be replayed: its bytes were not kept" in first
    code, second = _run(settings, "replay", "--stage", "validation")
    assert code == 0 and "replayed 0, skipped 1" in second and "already replayed" in second
    code, forced = _run(settings, "replay", "--stage", "validation", "--force")
    assert code == 0 and "replayed 1, skipped 0" in forced
    inbound = asyncio.run(read_to_end(settings, settings.inbound_topic))
    assert sorted(record.key for record in inbound) == [b"a", b"a", b"b"]


def test_bad_input_and_a_missing_topic_fail_with_one_clear_line(settings_for):
    """A bad --since exits 2 naming the option; a missing topic exits 1 saying so."""
    settings = settings_for()
    code, text = _run(settings, "replay", "--since", "last tuesday")
    assert code == 2 and "--since" in text and "ISO 8601" in text
    code, text = _run(settings, "inspect")
    assert code == 1 and f"topic {settings.dlq_topic!r} not found" in text
