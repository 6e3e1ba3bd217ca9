"""Topic set-up: the inbound, response and dead-letter topics."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.kafka_config import common_client_config
from stream.settings import Settings

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    return [settings.inbound_topic, settings.response_topic, settings.dlq_topic]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the three topics if missing; return the names that were created.

    Topics are created explicitly because broker auto-creation picks its own partition count.
    """
    admin = AIOKafkaAdminClient(**common_client_config(settings, "chatstream-admin"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(name, num_partitions=settings.partitions,
                     replication_factor=settings.replication_factor)
            for name in missing
        ]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently by another process")
        return missing
    finally:
        await admin.close()
