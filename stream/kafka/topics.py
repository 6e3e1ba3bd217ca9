"""The service's topics: inbound, responses, dead letters and the session changelog, all with
the configured partition count and replication factor."""

from __future__ import annotations

from infra.topics import TopicSpec, create_missing_topics
from stream.kafka.config import common_client_config
from stream.settings import Settings

__all__ = ["ensure_topics", "topic_names", "topic_specs"]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The inbound, response and dead-letter topics, and (when on) the session changelog:
    compacted, and with as many partitions as the inbound topic gets here, since its partition
    N holds the sessions of inbound partition N. Both take CHATSTREAM_PARTITIONS: an inbound
    topic created earlier with another count is not looked up (members refuse to start on a
    changelog with fewer partitions than it, naming both counts)."""
    specs = [TopicSpec(name, settings.partitions, settings.replication_factor)
             for name in (settings.inbound_topic, settings.response_topic, settings.dlq_topic)]
    if settings.changelog:
        specs.append(TopicSpec(settings.changelog_topic, settings.partitions,
                               settings.replication_factor, {"cleanup.policy": "compact"}))
    return specs


def topic_names(settings: Settings) -> list[str]:
    return [spec.name for spec in topic_specs(settings)]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the service's missing topics; return the names that were created."""
    return await create_missing_topics(common_client_config(settings, "chatstream-admin"),
                                       topic_specs(settings))
