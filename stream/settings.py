"""Settings, read once from the environment at the edge and passed inward frozen."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.limits import InputLimits

_CPUS = os.cpu_count() or 1


class SessionScope(StrEnum):
    USER = "user"  # (bot_id, channel_id, user_id): people in one channel are served side by side
    CHANNEL = "channel"  # (bot_id, channel_id): a whole channel answered in strict order


def _env(name: str, *aliases: str) -> AliasChoices:
    return AliasChoices(name, *aliases)


class Settings(BaseSettings):
    """Every knob of chatstream. Names are the environment variables that set them."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Kafka connection and topics
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"), min_length=1
    )
    group_id: str = Field("chatstream", validation_alias=_env("CHATSTREAM_GROUP_ID"), min_length=1)
    inbound_topic: str = Field(
        "chat.inbound", validation_alias=_env("CHATSTREAM_INBOUND_TOPIC"), min_length=1
    )
    response_topic: str = Field(
        "chat.responses", validation_alias=_env("CHATSTREAM_RESPONSE_TOPIC"), min_length=1
    )
    dlq_topic: str = Field("chat.dlq", validation_alias=_env("CHATSTREAM_DLQ_TOPIC"), min_length=1)
    partitions: int = Field(8, ge=1, le=10000, validation_alias=_env("CHATSTREAM_PARTITIONS"))
    replication_factor: int = Field(
        1, ge=1, le=16, validation_alias=_env("CHATSTREAM_REPLICATION_FACTOR")
    )

    # Kafka client tuning
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=30000, validation_alias=_env("CHATSTREAM_FETCH_MAX_WAIT_MS")
    )
    max_poll_records: int = Field(
        500, ge=1, le=100000, validation_alias=_env("CHATSTREAM_MAX_POLL_RECORDS")
    )
    session_timeout_ms: int = Field(
        10000, ge=1000, le=300000, validation_alias=_env("CHATSTREAM_KAFKA_SESSION_TIMEOUT_MS")
    )
    heartbeat_interval_ms: int = Field(
        3000, ge=100, le=60000, validation_alias=_env("CHATSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS")
    )
    producer_linger_ms: int = Field(
        5, ge=0, le=1000, validation_alias=_env("CHATSTREAM_PRODUCER_LINGER_MS")
    )
    producer_acks: Literal["all", "1", "0"] = Field(
        "all", validation_alias=_env("CHATSTREAM_PRODUCER_ACKS")
    )
    enable_idempotence: bool = Field(
        False, validation_alias=_env("CHATSTREAM_ENABLE_IDEMPOTENCE")
    )
    commit_interval_ms: int = Field(
        500, ge=10, le=60000, validation_alias=_env("CHATSTREAM_COMMIT_INTERVAL_MS")
    )
    commit_timeout_seconds: float = Field(
        5.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_COMMIT_TIMEOUT_SECONDS")
    )

    # Kafka security
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=_env("KAFKA_SASL_MECHANISM")
    )
    sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    sasl_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD"))
    ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    ssl_certfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CERTFILE"))
    ssl_keyfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_KEYFILE"))
    ssl_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SSL_PASSWORD"))

    # Input limits
    max_content_chars: int = Field(
        4000, ge=1, le=1_000_000, validation_alias=_env("CHATSTREAM_MAX_CONTENT_CHARS")
    )
    max_metadata_bytes: int = Field(
        8192, ge=1, le=1_000_000, validation_alias=_env("CHATSTREAM_MAX_METADATA_BYTES")
    )
    max_metadata_depth: int = Field(
        5, ge=1, le=64, validation_alias=_env("CHATSTREAM_MAX_METADATA_DEPTH")
    )
    max_record_bytes: int = Field(
        65536, ge=256, le=16_000_000, validation_alias=_env("CHATSTREAM_MAX_RECORD_BYTES")
    )

    # Engine
    enable_concurrent_manager: bool = Field(
        True, validation_alias=_env("ENABLE_CONCURRENT_CONVERSATION_MANAGER")
    )
    max_concurrent_sessions: int = Field(
        1000, ge=1, le=10_000_000, validation_alias=_env("MAX_CONCURRENT_SESSIONS")
    )
    session_timeout_minutes: float = Field(
        30, gt=0, le=10080, validation_alias=_env("SESSION_TIMEOUT_MINUTES")
    )
    session_scope: SessionScope = Field(
        SessionScope.USER, validation_alias=_env("CHATSTREAM_SESSION_SCOPE")
    )
    session_history_size: int = Field(
        50, ge=1, le=10000, validation_alias=_env("CHATSTREAM_SESSION_HISTORY_SIZE")
    )
    max_in_flight: int = Field(256, ge=1, le=100000, validation_alias=_env("CHATSTREAM_MAX_IN_FLIGHT"))
    max_buffered: int = Field(
        5000, ge=1, le=10_000_000, validation_alias=_env("CHATSTREAM_MAX_BUFFERED")
    )
    priority_aging_seconds: float = Field(
        2.0, gt=0, le=3600, validation_alias=_env("CHATSTREAM_PRIORITY_AGING_SECONDS")
    )
    max_worker_threads: int = Field(
        min(_CPUS * 2, 16), ge=1, le=1024, validation_alias=_env("MAX_WORKER_THREADS")
    )
    max_worker_processes: int = Field(
        min(_CPUS, 8), ge=1, le=256, validation_alias=_env("MAX_WORKER_PROCESSES")
    )
    processor_timeout_seconds: float = Field(
        2.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_PROCESSOR_TIMEOUT_SECONDS")
    )
    processor_retries: int = Field(2, ge=0, le=20, validation_alias=_env("CHATSTREAM_PROCESSOR_RETRIES"))
    circuit_failure_threshold: int = Field(
        5, ge=1, le=10000, validation_alias=_env("CHATSTREAM_CIRCUIT_FAILURE_THRESHOLD")
    )
    circuit_cooldown_seconds: float = Field(
        30, gt=0, le=3600, validation_alias=_env("CHATSTREAM_CIRCUIT_COOLDOWN_SECONDS")
    )
    context_cache_ttl_seconds: float = Field(
        120, gt=0, le=86400, validation_alias=_env("CONTEXT_CACHE_TTL_SECONDS")
    )
    context_cache_max_size: int = Field(
        5000, ge=1, le=10_000_000, validation_alias=_env("CONTEXT_CACHE_MAX_SIZE")
    )
    shutdown_timeout_seconds: float = Field(
        5.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS")
    )
    rebalance_timeout_seconds: float = Field(
        5.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_REBALANCE_TIMEOUT_SECONDS")
    )

    # Reply composer
    responder: Literal["template", "openai"] = Field(
        "template", validation_alias=_env("CHATSTREAM_RESPONDER")
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", validation_alias=_env("CHATSTREAM_OPENAI_BASE_URL")
    )
    openai_model: str = Field("gpt-4o-mini", validation_alias=_env("CHATSTREAM_OPENAI_MODEL"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("CHATSTREAM_OPENAI_API_KEY"))
    openai_timeout_seconds: float = Field(
        10.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_OPENAI_TIMEOUT_SECONDS")
    )

    processors: str = Field(
        "emotion,memory,thread,reply", validation_alias=_env("CHATSTREAM_PROCESSORS"),
        description="built-in processors to run, comma-separated (empty: none); a plugin "
        "processor with a built-in's name replaces it",
    )
    processor_plugins: str = Field(
        "", validation_alias=_env("CHATSTREAM_PROCESSOR_PLUGINS"),
        description="comma-separated 'module:factory' callables, each returning processors",
    )

    # Observability
    http_port: int | None = Field(None, ge=0, le=65535, validation_alias=_env("CHATSTREAM_HTTP_PORT"))
    http_host: str = Field("127.0.0.1", validation_alias=_env("CHATSTREAM_HTTP_HOST"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("CHATSTREAM_LOG_FORMAT"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("CHATSTREAM_LOG_LEVEL")
    )

    @model_validator(mode="after")
    def _security_combinations(self) -> Settings:
        has_credentials = self.sasl_mechanism and self.sasl_username and self.sasl_password
        if self.security_protocol.startswith("SASL") and not has_credentials:
            raise ValueError(
                "KAFKA_SECURITY_PROTOCOL=SASL_* needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                "CHATSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS must be lower than "
                "CHATSTREAM_KAFKA_SESSION_TIMEOUT_MS (a third of it is usual)"
            )
        return self

    @property
    def input_limits(self) -> InputLimits:
        return InputLimits(
            max_content_chars=self.max_content_chars,
            max_metadata_bytes=self.max_metadata_bytes,
            max_metadata_depth=self.max_metadata_depth,
            max_record_bytes=self.max_record_bytes,
        )

    @property
    def session_idle_timeout_s(self) -> float:
        return self.session_timeout_minutes * 60.0


class SettingsError(Exception):
    """Invalid configuration; ``str()`` is one line naming variable, value and expectation."""

    exit_code = 2


def _variable_for(field_name: str) -> str:
    field = Settings.model_fields.get(field_name)
    alias = field.validation_alias if field else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field_name.upper()


_SUGGESTIONS = {
    "int_parsing": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "greater_than_equal": "raise it",
    "greater_than": "use a positive number",
    "less_than_equal": "lower it",
    "literal_error": "pick one of the listed values",
    "enum": "pick one of the listed values",
}


def describe_error(error: ValidationError) -> str:
    """One line: the variable, the bad value, what is expected, and a suggestion."""
    item = error.errors(include_url=False)[0]
    if not item["loc"]:
        return f"invalid configuration: {item['msg'].removeprefix('Value error, ')}"
    variable = _variable_for(str(item["loc"][0]))
    value = item.get("input")
    hint = _SUGGESTIONS.get(item["type"])
    suffix = f" ({hint})" if hint else ""
    return f"invalid {variable}={value!r}: {item['msg']}{suffix}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (overrides win); raise SettingsError when invalid."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
