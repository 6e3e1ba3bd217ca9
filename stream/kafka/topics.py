"""The service's topics: inbound, responses, dead letters and the session changelog.

Rules, in the order they apply:
1. Missing topics are created with CHATSTREAM_PARTITIONS partitions and
   CHATSTREAM_REPLICATION_FACTOR replicas; existing ones are left as they are.
2. The changelog is compacted, and created with as many partitions as the inbound topic has
   (an existing inbound topic's own count, whatever CHATSTREAM_PARTITIONS says): its
   partition N holds the sessions of inbound partition N.
3. A changelog with fewer partitions than the inbound topic cannot hold them:
   ``topics ensure`` and a member's start both refuse it (``ChangelogMismatch``, a
   configuration error), naming both counts. A member that finds its response topic or
   changelog missing says so (``TopicMissing``, which a restart may mend once they exist).
4. An existing changelog whose ``cleanup.policy`` the broker reports without ``compact`` is
   refused by ``topics ensure``: retention would delete the sessions of quiet conversations
   (the embedded broker reports only a policy given when the topic was created).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from infra.topics import (
    TopicSpec,
    admin_client,
    create_missing,
    partition_counts,
    topic_config,
)
from stream.kafka.config import ClientStartFailed, common_client_config
from stream.settings import Settings, SettingsError

__all__ = ["ChangelogMismatch", "EnsuredTopic", "TopicMissing", "check_copartitioned",
           "ensure_topics", "topic_specs"]


class ChangelogMismatch(SettingsError):
    """The changelog topic is not co-partitioned with the inbound topic, or not compacted."""


class TopicMissing(ClientStartFailed):
    """A topic a member needs does not exist (yet): ``chatstream topics ensure`` makes it."""


@dataclass(frozen=True, slots=True)
class EnsuredTopic:
    name: str
    created: bool
    partitions: int | None  # None: the broker did not describe it


def topic_specs(settings: Settings, inbound_partitions: int | None = None) -> list[TopicSpec]:
    """The inbound, response and dead-letter topics, and (when on) the session changelog with
    the inbound topic's partition count (``inbound_partitions`` when it exists already)."""
    specs = [TopicSpec(name, settings.partitions, settings.replication_factor)
             for name in (settings.inbound_topic, settings.response_topic, settings.dlq_topic)]
    if settings.changelog:
        specs.append(TopicSpec(settings.changelog_topic, inbound_partitions or settings.partitions,
                               settings.replication_factor, {"cleanup.policy": "compact"}))
    return specs


def check_copartitioned(settings: Settings, inbound: int | None, changelog: int | None) -> None:
    """Raise ``TopicMissing`` for a missing changelog (``changelog``: its partitions, None when
    missing) and ``ChangelogMismatch`` for one that cannot hold each of the inbound topic's
    partitions (``inbound``; None: unknown)."""
    if not changelog:
        raise TopicMissing(
            f"changelog topic {settings.changelog_topic!r} does not exist: create it with "
            "`chatstream topics ensure`, or set CHATSTREAM_CHANGELOG=false")
    if inbound and changelog < inbound:
        raise ChangelogMismatch(
            f"changelog topic {settings.changelog_topic!r} has {changelog} partitions, the "
            f"inbound topic {inbound}: it needs at least as many (partition N holds the "
            "sessions of inbound partition N)")


async def ensure_topics(settings: Settings) -> list[EnsuredTopic]:
    """Create the service's missing topics (rules 1-2) and check the changelog (rules 3-4);
    each topic with whether it was created and its partition count. One admin client asks
    everything: the existing topics' counts before creating (the changelog takes the inbound
    topic's), and a topic just created counts what it was created with (a broker may not
    describe it yet); only a topic another process created meanwhile is described after."""
    names = [settings.inbound_topic, settings.response_topic, settings.dlq_topic]
    if settings.changelog:
        names.append(settings.changelog_topic)
    async with admin_client(common_client_config(settings, "chatstream-admin")) as admin:
        counts = await partition_counts(admin, names)
        specs = topic_specs(settings, counts.get(settings.inbound_topic))
        created = set(await create_missing(admin, specs))
        counts.update({spec.name: spec.partitions for spec in specs if spec.name in created})
        if unknown := [name for name in names if name not in counts]:
            counts.update(await partition_counts(admin, unknown))
        if settings.changelog:
            check_copartitioned(settings, counts.get(settings.inbound_topic),
                                counts.get(settings.changelog_topic))
            if settings.changelog_topic not in created:
                await _check_compacted(settings, admin)
    return [EnsuredTopic(spec.name, spec.name in created, counts.get(spec.name))
            for spec in specs]


async def _check_compacted(settings: Settings, admin: AIOKafkaAdminClient) -> None:
    policy = await topic_config(admin, settings.changelog_topic, "cleanup.policy")
    if policy is not None and "compact" not in {p.strip() for p in policy.split(",")}:
        raise ChangelogMismatch(
            f"changelog topic {settings.changelog_topic!r} has cleanup.policy={policy}: it "
            "needs compact, or retention deletes the sessions of quiet conversations (set it "
            "with kafka-configs --alter --add-config cleanup.policy=compact)")
