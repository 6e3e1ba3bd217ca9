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
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = ["TopicCreationRefused", "TopicSpec", "create_missing_topics"]

log = logging.getLogger(__name__)


class TopicCreationRefused(RuntimeError):
    """The broker refused to create some topics (replication above the brokers, no ACL...)."""


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
            response = await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently by another process")
            return [spec.name for spec in missing]
        # The admin client returns per-topic errors in the response instead of raising them.
        refused, concurrent = [], set()
        for topic, code, *message in response.topic_errors:
            error = for_code(code)
            if error is TopicAlreadyExistsError:
                concurrent.add(topic)
            elif code != 0:
                detail = message[0] if message and message[0] else error.__name__
                refused.append(f"{topic}: {error.__name__} ({detail})")
        if refused:
            raise TopicCreationRefused("the broker refused to create " + "; ".join(refused))
        return [spec.name for spec in missing if spec.name not in concurrent]
    finally:
        await admin.close()
