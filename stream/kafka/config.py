"""Kafka client keyword arguments, built by pure functions from Settings.

Every client chatstream creates (consumer, producer, admin, the CLI's bot producer) goes through
``common_client_config`` so security settings reach all of them.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    UnknownError,
    UnsupportedVersionError,
)

from stream.settings import Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    password = settings.ssl_password.get_secret_value() if settings.ssl_password else None
    return create_ssl_context(
        cafile=settings.ssl_cafile,
        certfile=settings.ssl_certfile,
        keyfile=settings.ssl_keyfile,
        password=password,
    )


def common_client_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """Connection and security arguments shared by all aiokafka clients."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # Settings validates the combination
        config.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value(),
        )
    context = _ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    return config


def consumer_config(settings: Settings, client_id: str = "chatstream-consumer") -> dict[str, Any]:
    """Consumer arguments: manual commits, earliest reset, a short fetch wait for low latency;
    static membership when ``group_instance_id`` is set."""
    static = {"group_instance_id": settings.group_instance_id} if settings.group_instance_id else {}
    return {
        **common_client_config(settings, client_id),
        **static,
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_poll_records": settings.max_poll_records,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "rebalance_timeout_ms": max(settings.session_timeout_ms,
                                    int(settings.rebalance_timeout_seconds * 1000) + 5000),
    }


def producer_config(settings: Settings, client_id: str = "chatstream-producer") -> dict[str, Any]:
    """Producer arguments: acks=all by default; idempotence only where the broker supports it."""
    acks: str | int = settings.producer_acks if settings.producer_acks == "all" else int(
        settings.producer_acks
    )
    return {
        **common_client_config(settings, client_id),
        "acks": acks,
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": settings.producer_max_batch_bytes,
        "compression_type": None if settings.producer_compression == "none"
        else settings.producer_compression,
        "enable_idempotence": settings.enable_idempotence,
        "request_timeout_ms": 30000,
        "retry_backoff_ms": 200,
    }


class ClientStartFailed(Exception):
    """A client could not start: the brokers could not be reached, or refused it; the message
    says which, where and why."""


def broker_failure(settings: Settings, error: BaseException) -> str:
    """One line saying why a client could not start against the configured brokers: they could
    not be reached (a connection error, a timeout, no broker left), or they refused it (any
    other Kafka error: a broker without idempotent producers refuses ``enable_idempotence``'s
    first request, with one of the errors that request can get)."""
    detail = " ".join(str(error).split()) or type(error).__name__
    where = f"the brokers at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    if isinstance(error, _UNREACHABLE):
        # A listener of another protocol (TLS against plain text, or the reverse) looks the same.
        protocol = settings.security_protocol
        hint = "" if protocol == "PLAINTEXT" else (
            f" (with KAFKA_SECURITY_PROTOCOL={protocol}: is that the listener's protocol?)")
        return f"cannot reach {where}: {detail}{hint}"
    hint = (" (CHATSTREAM_ENABLE_IDEMPOTENCE=true: brokers without idempotent producers "
            "refuse it; set it to false for them)") if settings.enable_idempotence and \
        isinstance(error, _IDEMPOTENCE_REFUSED) else ""
    return f"{where} refused the client: {detail}{hint}"


_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable, OSError,
                TimeoutError)
# What InitProducerId gets from a broker without idempotent producers, or without the right.
_IDEMPOTENCE_REFUSED = (UnknownError, UnsupportedVersionError, ClusterAuthorizationFailedError)
