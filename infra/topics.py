"""Topic creation on any Kafka: create what is missing, leave what exists.

Knows nothing of chatstream's settings: callers pass the admin client's keyword arguments
and the topics they need (``stream.kafka.topics`` does, for the service's own topics).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = ["TopicCreationRefused", "TopicSpec", "admin_client", "create_missing",
           "create_missing_topics", "partition_counts", "topic_config"]

log = logging.getLogger(__name__)


class TopicCreationRefused(RuntimeError):
    """The broker refused to create some topics (replication above the brokers, no ACL...)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def admin_client(client_config: Mapping[str, Any]) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on leaving: one connection for several questions."""
    admin = AIOKafkaAdminClient(**client_config)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_missing_topics(client_config: Mapping[str, Any],
                                topics: Sequence[TopicSpec]) -> list[str]:
    """``create_missing`` on an admin client of its own."""
    async with admin_client(client_config) as admin:
        return await create_missing(admin, topics)


async def create_missing(admin: AIOKafkaAdminClient, topics: Sequence[TopicSpec]) -> list[str]:
    """Create the topics of ``topics`` that do not exist; return the names that were created.

    Topics are created explicitly because broker auto-creation picks its own partition count.
    """
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


async def partition_counts(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, int]:
    """The partition count of each topic of ``names`` that exists (a missing one is left out:
    only existing topics are described, as describing a missing one may auto-create it)."""
    listed = set(await admin.list_topics())
    existing = [name for name in names if name in listed]
    if not existing:
        return {}
    described = await admin.describe_topics(existing)
    return {topic["topic"]: len(topic["partitions"]) for topic in described
            if topic["error_code"] == 0}


async def topic_config(admin: AIOKafkaAdminClient, topic: str, name: str) -> str | None:
    """The value of config ``name`` of an existing ``topic``; None when the broker does not
    report it. Asked for every config of the topic: some brokers refuse a filter by name."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    for response in responses:
        for error_code, _, _, resource, entries in response.resources:
            if error_code != 0 or resource != topic:
                continue
            for entry in entries:
                if entry[0] == name:
                    return str(entry[1])
    return None
