"""`chatstream topics ensure` on the real broker: what it creates, with which partition counts,
and the changelog it refuses."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from infra.topics import TopicSpec, create_missing_topics
from stream.app.cli import app
from stream.kafka.config import common_client_config
from stream.kafka.topics import ChangelogMismatch, ensure_topics
from stream.settings import Settings

pytestmark = pytest.mark.kafka


async def test_topics_ensure_gives_the_changelog_the_inbound_topics_own_count(settings_for):
    """An inbound topic made earlier with another count than CHATSTREAM_PARTITIONS: the
    changelog is created with the inbound topic's count, so members can start."""
    settings = settings_for(partitions=4)
    await create_missing_topics(common_client_config(settings, "test"),
                                [TopicSpec(settings.inbound_topic, 6)])
    ensured = {topic.name: topic for topic in await ensure_topics(settings)}
    assert ensured[settings.inbound_topic].partitions == 6
    assert not ensured[settings.inbound_topic].created
    assert ensured[settings.changelog_topic].partitions == 6
    assert ensured[settings.changelog_topic].created
    assert ensured[settings.response_topic].partitions == 4


async def test_topics_ensure_refuses_a_changelog_with_fewer_partitions(settings_for):
    settings = settings_for(partitions=4)
    await create_missing_topics(common_client_config(settings, "test"),
                                [TopicSpec(settings.changelog_topic, 2)])
    with pytest.raises(ChangelogMismatch, match="has 2 partitions, the inbound topic 4"):
        await ensure_topics(settings)
    # Without the changelog, nothing is checked.
    without = settings.model_copy(update={"changelog": False})
    assert all(topic.partitions == 4 for topic in await ensure_topics(without))


async def test_topics_ensure_refuses_a_changelog_that_is_not_compacted(settings_for):
    """Retention would delete the sessions of quiet conversations."""
    settings = settings_for(partitions=4)
    await create_missing_topics(common_client_config(settings, "test"), [
        TopicSpec(settings.changelog_topic, 4, configs={"cleanup.policy": "delete"})])
    with pytest.raises(ChangelogMismatch, match=r"has cleanup\.policy=delete: it needs compact"):
        await ensure_topics(settings)
    compacted = settings_for(partitions=4)
    await create_missing_topics(common_client_config(compacted, "test"), [
        TopicSpec(compacted.changelog_topic, 4, configs={"cleanup.policy": "compact,delete"})])
    assert len(await ensure_topics(compacted)) == 4


def _env(settings: Settings) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "CHATSTREAM_PARTITIONS": str(settings.partitions),
            "CHATSTREAM_INBOUND_TOPIC": settings.inbound_topic,
            "CHATSTREAM_RESPONSE_TOPIC": settings.response_topic,
            "CHATSTREAM_DLQ_TOPIC": settings.dlq_topic,
            "CHATSTREAM_CHANGELOG_TOPIC": settings.changelog_topic}


def test_the_command_says_what_it_created_and_each_topics_partitions(settings_for):
    settings = settings_for(partitions=3)
    names = [settings.inbound_topic, settings.response_topic, settings.dlq_topic,
             settings.changelog_topic]
    first = CliRunner().invoke(app, ["topics", "ensure"], env=_env(settings))
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [f"{name}: created (3 partitions)" for name in names]
    again = CliRunner().invoke(app, ["topics", "ensure"], env=_env(settings))
    assert again.exit_code == 0, again.output
    assert again.output.splitlines() == [f"{name}: exists (3 partitions)" for name in names]
