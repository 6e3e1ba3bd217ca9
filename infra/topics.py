"""Topic creation on any Kafka: create what is missing, leave what exists.

Knows nothing of chatstream's settings: callers pass the admin client's keyword arguments
and the topics they need (``stream.kafka.topics`` does, for the service's own topics).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["TopicSpec", "create_missing_topics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)


async def create_missing_topics(client_config: Mapping[str, Any],
                                topics: Sequence[TopicSpec]) -> list[str]:
    """Create the topics of ``topics`` that do not exist; return the names that were created.

    Topics are created explicitly because broker auto-creation picks its own partition count.
    """
    admin = AIOKafkaAdminClient(**client_config)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topics if spec.name not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(spec.name, num_partitions=spec.partitions,
                     replication_factor=spec.replication_factor,
                     topic_configs=dict(spec.configs))
            for spec in missing
        ]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently by another process")
        return [spec.name for spec in missing]
    finally:
        await admin.close()
