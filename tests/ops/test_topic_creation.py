"""Topic creation reports what the broker refused: the admin client returns per-topic errors in
its response instead of raising them. A fake admin client stands in, as the embedded broker
refuses nothing (it accepts any replication factor)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

import infra.topics as topics_module
from infra.topics import TopicCreationRefused, TopicSpec, create_missing_topics


class _Admin:
    """Answers CreateTopics with ``errors``: (topic, error code, message)."""

    errors: ClassVar[list[tuple[str, int, str | None]]] = []

    def __init__(self, **_: Any) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        return ["exists"]

    async def create_topics(self, new_topics: list[Any]) -> Any:
        return SimpleNamespace(topic_errors=list(self.errors))


SPECS = [TopicSpec("exists", 2), TopicSpec("a", 2, 3), TopicSpec("b", 2, 3)]


async def test_a_topic_the_broker_refuses_is_an_error_naming_it_and_why(monkeypatch):
    monkeypatch.setattr(topics_module, "AIOKafkaAdminClient", _Admin)
    monkeypatch.setattr(_Admin, "errors", [
        ("a", 0, None), ("b", 38, "Replication factor: 3 larger than available brokers: 1.")])
    with pytest.raises(TopicCreationRefused,
                       match=r"b: InvalidReplicationFactorError \(Replication factor: 3"):
        await create_missing_topics({}, SPECS)


async def test_topics_created_meanwhile_by_another_process_are_not_reported_created(
        monkeypatch):
    monkeypatch.setattr(topics_module, "AIOKafkaAdminClient", _Admin)
    monkeypatch.setattr(_Admin, "errors", [("a", 0, None), ("b", 36, "already exists")])
    assert await create_missing_topics({}, SPECS) == ["a"]
