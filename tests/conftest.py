"""Shared fixtures: one real broker per test session, unique topics and groups per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from infra.broker import EmbeddedBroker
from stream.settings import Settings, load_settings

# An example passes or fails by what it shows, not by how long a loaded machine takes to run
# or to generate it: no per-example deadline (hypothesis' default is 200 ms), and no
# too-slow health check.
hypothesis_settings.register_profile("chatstream", deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("chatstream")


class BrokerHandle:
    """The broker under test: its bootstrap address and, for the embedded one, its process id."""

    def __init__(self, bootstrap_servers: str, pid: int | None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.pid = pid


def _docker_available() -> bool:
    return shutil.which("docker") is not None and os.path.exists("/var/run/docker.sock")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[BrokerHandle]:
    """The embedded broker, or testcontainers' Kafka with CHATSTREAM_TEST_BROKER=testcontainers."""
    if os.environ.get("CHATSTREAM_TEST_BROKER") == "testcontainers":
        if not _docker_available():
            pytest.fail("CHATSTREAM_TEST_BROKER=testcontainers but no Docker engine is reachable")
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield BrokerHandle(container.get_bootstrap_server(), None)
        return
    with EmbeddedBroker() as broker:
        yield BrokerHandle(broker.bootstrap_servers, broker.pid)


@pytest.fixture
def settings_for(kafka_broker: BrokerHandle):  # type: ignore[no-untyped-def]
    """Build Settings on the test broker with topics and a group unique to this test."""

    def build(**overrides: object) -> Settings:
        suffix = uuid.uuid4().hex[:10]
        defaults: dict[str, object] = {
            "kafka_bootstrap_servers": kafka_broker.bootstrap_servers,
            "group_id": f"chatstream-test-{suffix}",
            "inbound_topic": f"in-{suffix}",
            "response_topic": f"out-{suffix}",
            "dlq_topic": f"dlq-{suffix}",
            "changelog_topic": f"sessions-{suffix}",
            "partitions": 4,
            "session_timeout_ms": 3000,
            "heartbeat_interval_ms": 600,
            "commit_interval_ms": 100,
            "processor_timeout_seconds": 5.0,
            "max_worker_processes": 1,
            "max_worker_threads": 4,
        }
        defaults.update(overrides)
        return load_settings(**defaults)

    return build


@pytest.fixture
def fresh_tracer_provider() -> Iterator[None]:
    """Let a test install its own global tracer provider, and remove it afterwards."""
    from opentelemetry import trace

    def reset() -> None:
        trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]

    reset()
    yield
    reset()
