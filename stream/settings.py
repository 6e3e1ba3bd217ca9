"""Settings, read once from the environment at the edge and passed inward frozen."""

from __future__ import annotations

import functools
import os
from enum import StrEnum
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.limits import InputLimits

_CPUS = os.cpu_count() or 1


class SessionScope(StrEnum):
    USER = "user"  # (bot_id, channel_id, user_id): people in one channel are served side by side
    CHANNEL = "channel"  # (bot_id, channel_id): a whole channel answered in strict order


class EventLoopChoice(StrEnum):
    AUTO = "auto"  # uvloop where it is installed, else asyncio's own loop
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def _env(name: str, *aliases: str) -> AliasChoices:
    return AliasChoices(name, *aliases)


class Settings(BaseSettings):
    """Every knob of chatstream. Names are the environment variables that set them."""

    # No populate_by_name: pydantic-settings would then read each field's bare name from the
    # environment too (LOG_LEVEL, HTTP_HOST, OPENAI_API_KEY...), which no one documents or
    # expects. Overrides by field name go through ``load_settings``.
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # Kafka connection and topics
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"), min_length=1,
        description="brokers to connect to, comma-separated host:port",
    )
    group_id: str = Field(
        "chatstream", validation_alias=_env("CHATSTREAM_GROUP_ID"), min_length=1,
        description="consumer group the members join",
    )
    group_instance_id: str | None = Field(
        None, validation_alias=_env("CHATSTREAM_GROUP_INSTANCE_ID"), min_length=1,
        description="static group membership (e.g. the pod name): a member restarted within "
        "the session timeout gets its partitions back without a rebalance",
    )
    changelog: bool = Field(
        True, validation_alias=_env("CHATSTREAM_CHANGELOG"),
        description="keep each session's state in the changelog topic, so conversations "
        "survive hand-overs and crashes (one more record per answer)",
    )
    changelog_topic: str = Field(
        "chat.sessions", validation_alias=_env("CHATSTREAM_CHANGELOG_TOPIC"), min_length=1,
        description="compacted topic holding each session's state, co-partitioned with the "
        "inbound topic",
    )
    inbound_topic: str = Field(
        "chat.inbound", validation_alias=_env("CHATSTREAM_INBOUND_TOPIC"), min_length=1,
        description="topic the bots publish chat events to",
    )
    response_topic: str = Field(
        "chat.responses", validation_alias=_env("CHATSTREAM_RESPONSE_TOPIC"), min_length=1,
        description="topic the responses are published to",
    )
    dlq_topic: str = Field(
        "chat.dlq", validation_alias=_env("CHATSTREAM_DLQ_TOPIC"), min_length=1,
        description="dead-letter topic: records that cannot be answered, with the reason",
    )
    partitions: int = Field(
        8, ge=1, le=10000, validation_alias=_env("CHATSTREAM_PARTITIONS"),
        description="partitions of the topics `chatstream topics ensure` creates",
    )
    replication_factor: int = Field(
        1, ge=1, le=16, validation_alias=_env("CHATSTREAM_REPLICATION_FACTOR"),
        description="replication factor of the topics `chatstream topics ensure` creates",
    )

    # Kafka client tuning
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=30000, validation_alias=_env("CHATSTREAM_FETCH_MAX_WAIT_MS"),
        description="longest a fetch may wait for data; low values keep latency low",
    )
    max_poll_records: int = Field(
        500, ge=1, le=100000, validation_alias=_env("CHATSTREAM_MAX_POLL_RECORDS"),
        description="most records taken from one fetch",
    )
    session_timeout_ms: int = Field(
        10000, ge=1000, le=300000, validation_alias=_env("CHATSTREAM_KAFKA_SESSION_TIMEOUT_MS"),
        description="consumer group session timeout: a member silent this long is replaced",
    )
    heartbeat_interval_ms: int = Field(
        3000, ge=100, le=60000, validation_alias=_env("CHATSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS"),
        description="consumer heartbeat interval; below the session timeout (a third)",
    )
    producer_linger_ms: int = Field(
        5, ge=0, le=1000, validation_alias=_env("CHATSTREAM_PRODUCER_LINGER_MS"),
        description="how long the producer waits to fill a batch of dead letters or of "
        "records published one by one (answers go out in batches per broker round trip)",
    )
    producer_max_batch_bytes: int = Field(
        262_144, ge=16_384, le=16_777_216,
        validation_alias=_env("CHATSTREAM_PRODUCER_MAX_BATCH_BYTES"),
        description="largest batch per partition (keep it under the broker's "
        "message.max.bytes); a larger answer is published on its own, in its place",
    )
    producer_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none", validation_alias=_env("CHATSTREAM_PRODUCER_COMPRESSION"),
        description="compression of published batches (on one machine it cost more CPU than "
        "it saved; across a network it saves bandwidth)",
    )
    producer_acks: Literal["all", "1", "0"] = Field(
        "all", validation_alias=_env("CHATSTREAM_PRODUCER_ACKS"),
        description="acknowledgements a publish waits for; `all` for at-least-once",
    )
    enable_idempotence: bool = Field(
        False, validation_alias=_env("CHATSTREAM_ENABLE_IDEMPOTENCE"),
        description="idempotent producer (Apache Kafka has it; the embedded broker does not)",
    )
    commit_interval_ms: int = Field(
        500, ge=10, le=60000, validation_alias=_env("CHATSTREAM_COMMIT_INTERVAL_MS"),
        description="how often the offsets of answered records are committed",
    )
    commit_timeout_seconds: float = Field(
        5.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_COMMIT_TIMEOUT_SECONDS"),
        description="longest wait for one commit; a timed-out one is retried next interval",
    )

    # Kafka security
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL"),
        description="how every client connects to the brokers",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=_env("KAFKA_SASL_MECHANISM"),
        description="SASL mechanism; required with the SASL_* protocols",
    )
    sasl_username: str | None = Field(
        None, validation_alias=_env("KAFKA_SASL_USERNAME"),
        description="SASL user name; required with the SASL_* protocols",
    )
    sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SASL_PASSWORD"),
        description="SASL password; required with the SASL_* protocols; never printed",
    )
    ssl_cafile: str | None = Field(
        None, validation_alias=_env("KAFKA_SSL_CAFILE"),
        description="CA certificates to verify the brokers with (SSL, SASL_SSL)",
    )
    ssl_certfile: str | None = Field(
        None, validation_alias=_env("KAFKA_SSL_CERTFILE"),
        description="client certificate, for brokers that require mutual TLS",
    )
    ssl_keyfile: str | None = Field(
        None, validation_alias=_env("KAFKA_SSL_KEYFILE"),
        description="private key of the client certificate",
    )
    ssl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SSL_PASSWORD"),
        description="password of the client key; never printed",
    )

    # Input limits
    max_content_chars: int = Field(
        4000, ge=1, le=1_000_000, validation_alias=_env("CHATSTREAM_MAX_CONTENT_CHARS"),
        description="longest accepted event content, in characters",
    )
    max_metadata_bytes: int = Field(
        8192, ge=1, le=1_000_000, validation_alias=_env("CHATSTREAM_MAX_METADATA_BYTES"),
        description="largest accepted event metadata, in bytes of JSON",
    )
    max_metadata_depth: int = Field(
        5, ge=1, le=64, validation_alias=_env("CHATSTREAM_MAX_METADATA_DEPTH"),
        description="deepest accepted nesting of event metadata",
    )
    max_record_bytes: int = Field(
        65536, ge=256, le=16_000_000, validation_alias=_env("CHATSTREAM_MAX_RECORD_BYTES"),
        description="largest accepted inbound record, in bytes",
    )

    # Engine
    enable_concurrent_manager: bool = Field(
        True, validation_alias=_env("ENABLE_CONCURRENT_CONVERSATION_MANAGER"),
        description="false selects the basic path: one event at a time per partition",
    )
    max_concurrent_sessions: int = Field(
        1000, ge=1, le=10_000_000, validation_alias=_env("MAX_CONCURRENT_SESSIONS"),
        description="sessions kept in memory; when all are busy, new conversations wait",
    )
    session_timeout_minutes: float = Field(
        30, gt=0, le=10080, validation_alias=_env("SESSION_TIMEOUT_MINUTES"),
        description="idle sessions expire after this many minutes",
    )
    session_scope: SessionScope = Field(
        SessionScope.USER, validation_alias=_env("CHATSTREAM_SESSION_SCOPE"),
        description="`user`: a session is (bot, channel, user); `channel`: (bot, channel)",
    )
    session_history_size: int = Field(
        50, ge=1, le=10000, validation_alias=_env("CHATSTREAM_SESSION_HISTORY_SIZE"),
        description="recent messages kept per session",
    )
    max_in_flight: int = Field(
        256, ge=1, le=100000, validation_alias=_env("CHATSTREAM_MAX_IN_FLIGHT"),
        description="events processed at once, over all sessions",
    )
    max_buffered: int = Field(
        5000, ge=1, le=10_000_000, validation_alias=_env("CHATSTREAM_MAX_BUFFERED"),
        description="events held in memory; above this the partitions pause (backpressure)",
    )
    priority_aging_seconds: float = Field(
        2.0, gt=0, le=3600, validation_alias=_env("CHATSTREAM_PRIORITY_AGING_SECONDS"),
        description="a waiting conversation gains one priority level per interval",
    )
    max_worker_threads: int = Field(
        min(_CPUS * 2, 16), ge=1, le=1024, validation_alias=_env("MAX_WORKER_THREADS"),
        description="threads running `thread` processors",
    )
    max_worker_processes: int = Field(
        min(_CPUS, 8), ge=1, le=256, validation_alias=_env("MAX_WORKER_PROCESSES"),
        description="worker processes running `process` processors",
    )
    processor_timeout_seconds: float = Field(
        2.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_PROCESSOR_TIMEOUT_SECONDS"),
        description="time limit of one call of a built-in processor, retries included (a "
        "plugin processor has its own timeout_s)",
    )
    processor_retries: int = Field(
        2, ge=0, le=20, validation_alias=_env("CHATSTREAM_PROCESSOR_RETRIES"),
        description="retries of a processor's transient errors, with backoff and jitter",
    )
    circuit_failure_threshold: int = Field(
        5, ge=1, le=10000, validation_alias=_env("CHATSTREAM_CIRCUIT_FAILURE_THRESHOLD"),
        description="consecutive failures that open a processor's circuit breaker",
    )
    circuit_cooldown_seconds: float = Field(
        30, gt=0, le=3600, validation_alias=_env("CHATSTREAM_CIRCUIT_COOLDOWN_SECONDS"),
        description="how long an open circuit breaker skips its processor",
    )
    context_cache_ttl_seconds: float = Field(
        120, gt=0, le=86400, validation_alias=_env("CONTEXT_CACHE_TTL_SECONDS"),
        description="lifetime of a context cache entry",
    )
    context_cache_max_size: int = Field(
        5000, ge=1, le=10_000_000, validation_alias=_env("CONTEXT_CACHE_MAX_SIZE"),
        description="entries the context cache holds",
    )
    shutdown_timeout_seconds: float = Field(
        5.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS"),
        description="drain deadline on SIGTERM",
    )
    rebalance_timeout_seconds: float = Field(
        5.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_REBALANCE_TIMEOUT_SECONDS"),
        description="drain deadline for revoked partitions",
    )

    # Reply composer
    responder: Literal["template", "openai"] = Field(
        "template", validation_alias=_env("CHATSTREAM_RESPONDER"),
        description="reply backend: `template`, or `openai` for an OpenAI-compatible API",
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", validation_alias=_env("CHATSTREAM_OPENAI_BASE_URL"),
        description="base URL of the OpenAI-compatible API",
    )
    openai_model: str = Field(
        "gpt-4o-mini", validation_alias=_env("CHATSTREAM_OPENAI_MODEL"),
        description="model asked by the OpenAI-compatible responder",
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=_env("CHATSTREAM_OPENAI_API_KEY"),
        description="API key, sent as a Bearer token; never printed",
    )
    openai_timeout_seconds: float = Field(
        10.0, gt=0, le=600, validation_alias=_env("CHATSTREAM_OPENAI_TIMEOUT_SECONDS"),
        description="time limit of one API call",
    )

    gc_young_threshold: int = Field(
        25_000, ge=0, le=10_000_000, validation_alias=_env("CHATSTREAM_GC_YOUNG_THRESHOLD"),
        description="allocations between collections of the youngest generation in a member "
        "process (Python's default is 700; 0 keeps Python's thresholds)",
    )
    event_loop: EventLoopChoice = Field(
        EventLoopChoice.AUTO, validation_alias=_env("CHATSTREAM_EVENT_LOOP"),
        description="event loop of a member process: `uvloop` (faster I/O and timers), "
        "`asyncio`, or `auto` (uvloop where it is installed)",
    )
    workers: int = Field(
        _CPUS, ge=1, le=256, validation_alias=_env("CHATSTREAM_WORKERS"),
        description="group members `chatstream run` starts under one supervisor",
    )
    processor_kinds: str = Field(
        "", validation_alias=_env("CHATSTREAM_PROCESSOR_KINDS"),
        description="moves steps, name=inline|thread|process comma-separated; unnamed, the "
        "built-in emotion and memory run inline, on the event loop (VADER and the memory "
        "index take microseconds, a pool hop hundreds), every other step in its own kind",
    )
    builtin_processors: str = Field(
        "emotion,memory,thread,reply", validation_alias=_env("CHATSTREAM_PROCESSORS"),
        description="built-in processors to run, comma-separated (empty: none); a plugin "
        "processor with a built-in's name replaces it",
    )
    processor_plugins: str = Field(
        "", validation_alias=_env("CHATSTREAM_PROCESSOR_PLUGINS"),
        description="comma-separated 'module:factory' callables, each returning processors",
    )

    # Observability
    http_port: int | None = Field(
        None, ge=0, le=65535, validation_alias=_env("CHATSTREAM_HTTP_PORT"),
        description="serve /metrics, /stats, /healthz, /readyz on this port (0: any free); unset: off",
    )
    http_host: str = Field(
        "127.0.0.1", validation_alias=_env("CHATSTREAM_HTTP_HOST"),
        description="address the HTTP endpoints listen on",
    )
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias=_env("CHATSTREAM_LOG_FORMAT"),
        description="`json`: one JSON object per line, with trace and span ids",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("CHATSTREAM_LOG_LEVEL"),
        description="lowest level logged",
    )

    @field_validator("security_protocol", "sasl_mechanism", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        """Names of protocols, mechanisms and levels are read in any case (``sasl_ssl``)."""
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``KAFKA_SSL_CAFILE=`` (a template's empty default) means no file, as before."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        """With TLS on, a path the TLS context would fail on later, with an error naming no
        variable; without it the files are not read, so not checked."""
        protocol = str(info.data.get("security_protocol", ""))
        if value is not None and protocol.endswith("SSL") and not (
                os.path.isfile(value) and os.access(value, os.R_OK)):
            raise ValueError("no readable file at that path")
        return value

    @model_validator(mode="after")
    def _security_combinations(self) -> Settings:
        missing = [_variable_of(name) for name in ("sasl_mechanism", "sasl_username",
                                                   "sasl_password") if not getattr(self, name)]
        if self.security_protocol.startswith("SASL") and missing:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {', '.join(missing)}"
            )
        if self.enable_idempotence and self.producer_acks != "all":
            raise ValueError(
                "CHATSTREAM_ENABLE_IDEMPOTENCE=true needs CHATSTREAM_PRODUCER_ACKS=all "
                f"(it is {self.producer_acks})"
            )
        by_name: dict[str, list[str]] = {}
        for field in ("inbound_topic", "response_topic", "dlq_topic", "changelog_topic"):
            by_name.setdefault(getattr(self, field), []).append(_variable_of(field))
        if shared := [names for names in by_name.values() if len(names) > 1]:
            # Answers or dead letters written to the inbound topic would be consumed again.
            raise ValueError(" and ".join(shared[0]) + " name the same topic: each needs its own")
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
    message = item["msg"].removeprefix("Value error, ")  # a validator's own ValueError
    if not item["loc"]:
        return f"invalid configuration: {message}"
    variable = _variable_for(str(item["loc"][0]))
    value = item.get("input")
    hint = _SUGGESTIONS.get(item["type"])
    suffix = f" ({hint})" if hint else ""
    return f"invalid {variable}={value!r}: {message}{suffix}"


# What puts another process on the same broker, group and topics (a member started by a test or
# a benchmark, a supervised worker): everything else it reads from its own environment.
_PLACEMENT_FIELDS = ("kafka_bootstrap_servers", "group_id", "inbound_topic", "response_topic",
                     "dlq_topic", "changelog_topic", "partitions")


def _variable_of(name: str) -> str:
    """The primary environment variable of the field ``name``."""
    alias = Settings.model_fields[name].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def placement_environment(settings: Settings) -> dict[str, str]:
    """The environment variables (by their primary names) that give a process started with them
    the broker, group and topics of ``settings``."""
    return {_variable_of(name): str(getattr(settings, name)) for name in _PLACEMENT_FIELDS}


@functools.cache
def variable_names() -> frozenset[str]:
    """Every environment variable the settings read (each field's validation aliases)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices)
    return frozenset(names)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; ``overrides`` win, by field name
    (``max_in_flight=10``) or by variable (``CHATSTREAM_MAX_IN_FLIGHT="10"``). Raises
    SettingsError when a value is invalid, TypeError for a name that is neither."""
    fields = Settings.model_fields
    unknown = sorted(set(overrides) - set(fields) - variable_names())
    if unknown:
        raise TypeError(f"unknown settings {unknown}: see stream.settings.Settings")
    try:
        return Settings(**{_variable_of(name) if name in fields else name: value  # type: ignore[arg-type]
                           for name, value in overrides.items()})
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
