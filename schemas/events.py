"""Inbound chat events and outbound responses (pydantic v2)."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from schemas.limits import InputLimits

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, strict=True)]

# Fixed namespace: response ids must be identical across processes and releases so that a
# reader can drop the duplicates a crash produces.
RESPONSE_NAMESPACE = uuid.UUID("6f1d9f3e-3b8a-5c41-9a57-2d0c1b7e4a10")
_NAMESPACE_BYTES = RESPONSE_NAMESPACE.bytes
SCHEMA_VERSION: Literal[1] = 1


class Priority(StrEnum):
    """Scheduling priority, most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    rank: int  # 0 for critical … 3 for low: lower runs first (set below, once per member)


# A plain attribute, not a property: the scheduler reads it several times per event.
for _rank, _priority in enumerate(Priority):
    _priority.rank = _rank
del _rank, _priority


class MessageType(StrEnum):
    MESSAGE = "message"
    MENTION = "mention"
    DM = "dm"
    SYSTEM = "system"


# What the validators accept, for the JSON Schema (pydantic would say only "date-time").
_TIMESTAMP_SCHEMA = {"anyOf": [
    {"type": "string", "format": "date-time"},
    {"type": "number", "minimum": 0, "exclusiveMaximum": 32503680000,
     "description": "epoch seconds"},
]}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _exceeds_depth(value: Any, limit: int) -> bool:
    """True if containers nest deeper than ``limit``; iterative and stops at the limit, so a
    hostile document nested thousands of levels deep costs no recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _is_number(text: str) -> bool:
    """``"1700000000"``, ``"+1.7e9"``, ``"nan"``: text Python reads as a number, which pydantic
    would take for epoch seconds (or milliseconds) instead of refusing."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _limits(info: ValidationInfo) -> InputLimits:
    context = info.context
    if isinstance(context, InputLimits):
        return context
    return InputLimits()


class ChatEvent(BaseModel):
    """One chat message as a bot publishes it to the inbound topic.

    Validation limits come from the validation context (an ``InputLimits``); without one the
    defaults apply. Unknown fields are ignored so producers can add fields without breaking us.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Identifier
    bot_id: Identifier
    channel_id: Identifier
    user_id: Identifier
    content: Annotated[str, StringConstraints(strict=True)]
    timestamp: Annotated[datetime, WithJsonSchema(_TIMESTAMP_SCHEMA)] = Field(
        default_factory=_utc_now)
    priority: Priority | None = None
    message_type: MessageType = MessageType.MESSAGE
    metadata: dict[str, Any] | None = None
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("content")
    @classmethod
    def _content_within_limit(cls, value: str, info: ValidationInfo) -> str:
        limit = _limits(info).max_content_chars
        if len(value) > limit:
            raise ValueError(f"content has {len(value)} characters, the limit is {limit}")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp_is_iso_or_epoch(cls, value: Any) -> Any:
        # Booleans and numeric strings would otherwise be coerced silently.
        if isinstance(value, bool) or not isinstance(value, (str, int, float, datetime)):
            raise ValueError("timestamp must be an ISO 8601 string or epoch seconds")
        if isinstance(value, str) and _is_number(value):
            raise ValueError("timestamp must be an ISO 8601 string or a JSON number")
        if isinstance(value, (int, float)):
            if not 0 <= value < 32503680000:
                raise ValueError("epoch seconds out of range (0 .. year 3000)")
            # Seconds, always: pydantic would read a number above 2e10 as milliseconds.
            return datetime.fromtimestamp(value, UTC)
        return value

    @field_validator("timestamp")
    @classmethod
    def _timestamp_is_aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("metadata")
    @classmethod
    def _metadata_within_limits(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        limits = _limits(info)
        if _exceeds_depth(value, limits.max_metadata_depth):
            raise ValueError(
                f"metadata is nested more than {limits.max_metadata_depth} levels deep, "
                f"the limit is {limits.max_metadata_depth}"
            )
        size = len(orjson.dumps(value))
        if size > limits.max_metadata_bytes:
            raise ValueError(
                f"metadata is {size} bytes as JSON, the limit is {limits.max_metadata_bytes}"
            )
        return value


def chat_event_schema(limits: InputLimits | None = None) -> dict[str, Any]:
    """The JSON Schema of ``ChatEvent`` as a bot in another language needs it: with the input
    limits (``limits``, else the defaults) that the decoder enforces beyond the model's types:
    content's length in characters, and metadata's size and depth in the descriptions (JSON
    Schema cannot bound a size in bytes)."""
    limits = limits or InputLimits()
    schema = ChatEvent.model_json_schema()
    schema["description"] = (
        "One chat message as a bot publishes it to the inbound topic, keyed by channel_id. "
        "Fields not named here are ignored. A record longer than "
        f"{limits.max_record_bytes} bytes is refused whatever its fields.")
    properties = schema["properties"]
    properties["content"]["maxLength"] = limits.max_content_chars
    properties["metadata"]["description"] = (
        f"a JSON object of at most {limits.max_metadata_bytes} bytes as compact JSON, nested "
        f"at most {limits.max_metadata_depth} levels deep")
    return schema


class ProcessorStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # circuit open: the processor was not called


class ProcessorOutcome(BaseModel):
    """What one processor contributed to a response."""

    model_config = ConfigDict(frozen=True)

    status: ProcessorStatus
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    duration_ms: float = 0.0


def to_microsecond(ms: float) -> float:
    """A finite duration in milliseconds kept to the microsecond, as responses and outcomes
    report it: ``ms * 1000`` rounded half up, in a fifth of the time of ``round(ms, 3)`` (which
    goes through a decimal string; an event rounds four durations). The two differ only in
    the last digit, where ``ms * 1000`` lands on a half after its own float rounding."""
    return math.floor(ms * 1000.0 + 0.5) / 1000.0


_sha1 = hashlib.sha1
_VARIANT_DIGITS = "89ab"


def response_id_for(event_id: str, bot_id: str) -> str:
    """Deterministic response id: reprocessing an event yields the same id. It is
    ``str(uuid.uuid5(RESPONSE_NAMESPACE, f"{bot_id}\x1f{event_id}"))``, computed without the
    ``UUID`` object (a third of the cost, on every answer): the digest's first 16 bytes in hex,
    with the version digit 5 in place of the 13th and the RFC 4122 variant bits set in the
    17th (8, 9, a or b)."""
    digest = _sha1(_NAMESPACE_BYTES + f"{bot_id}\x1f{event_id}".encode(),
                   usedforsecurity=False).digest()
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT_DIGITS[digest[8] >> 4 & 3]}{x[17:20]}-{x[20:32]}"


class ResponseEvent(BaseModel):
    """One answer, published to the response topic keyed by channel_id."""

    model_config = ConfigDict(frozen=True)

    response_id: str
    in_reply_to: str
    bot_id: str
    channel_id: str
    user_id: str
    session_id: str
    priority: Priority
    reply: str | None
    analysis: dict[str, ProcessorOutcome]
    degraded: list[str]
    queued_ms: float
    processing_ms: float
    processed_at: datetime = Field(default_factory=_utc_now)
    schema_version: Literal[1] = SCHEMA_VERSION
