"""Dead-letter records: the original key and bytes unchanged, the reason in headers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from stream.kafka.records import Delivery, RecordSource

HEADER_PREFIX = "chatstream.dlq."
_MAX_MESSAGE_BYTES = 1024

# ``chatstream dlq replay`` (stream.ops.dlq) puts the first on each record it re-publishes
# ("dlq-topic/partition/offset"), and writes a marker record carrying the second
# ("partition/offset") into the dead-letter topic for each dead letter it replayed. Neither
# starts with HEADER_PREFIX: they are not reasons.
REPLAYED_FROM_HEADER = "chatstream.replayed-from"
REPLAY_MARKER_HEADER = "chatstream.replay-marker"


class Reason(Protocol):
    """Why a record is dead-lettered: ``schemas.codec.DecodeError`` is one."""

    @property
    def stage(self) -> str: ...

    @property
    def error_type(self) -> str: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True, slots=True)
class FailureReason:
    """A reason for a record that decoded but could not be answered.

    ``stage`` is "processing" (the engine raised) or "publish" (the response was rejected).
    """

    stage: str
    error_type: str
    message: str

    @classmethod
    def of(cls, stage: str, error: BaseException) -> FailureReason:
        return cls(stage, type(error).__name__, str(error) or type(error).__name__)


def dead_letter(topic: str, source: RecordSource, value: bytes | None, reason: Reason) -> Delivery:
    """The DLQ record for an inbound record that could not be answered.

    The source's own headers (trace context included) are kept ahead of the reason headers, so
    a reader of the DLQ can follow the original trace; those only chatstream may write there
    (reasons, the replay marker's) are dropped, so a record cannot pass for a marker or carry
    a reason of its own.
    """
    headers = [(k, v) for k, v in source.headers
               if not k.startswith(HEADER_PREFIX) and k != REPLAY_MARKER_HEADER] + _headers(
        ("error.type", reason.error_type),
        ("error.message", reason.message.encode(errors="replace")[:_MAX_MESSAGE_BYTES].decode(
            errors="ignore")),
        ("error.stage", reason.stage),
        ("source.topic", source.tp.topic),
        ("source.partition", str(source.tp.partition)),
        ("source.offset", str(source.offset)),
    )
    return _sendable(Delivery(topic=topic, key=source.key, value=value, headers=headers))


def without_value(delivery: Delivery, why: str) -> Delivery:
    """The same dead letter with the original bytes left out, saying why: the last resort when
    the dead-letter topic itself refuses the record (usually for its size)."""
    return _sendable(replace(delivery, value=None, headers=[
        *delivery.headers, *_headers(("value.dropped", why[:_MAX_MESSAGE_BYTES]))]))


def _sendable(delivery: Delivery) -> Delivery:
    """``delivery``, or, when it has neither key nor value, the same with an empty value and
    ``value.null`` saying so. Other clients write such records, but aiokafka refuses to send
    one, and a dead letter that cannot be sent would hold its partition's commits back."""
    if delivery.key is not None or delivery.value is not None:
        return delivery
    return replace(delivery, value=b"", headers=[*delivery.headers, *_headers(
        ("value.null", "the record had neither key nor value; an empty value stands for it"))])


def reason_of(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """The reason headers of a DLQ record, without the prefix."""
    return {
        k.removeprefix(HEADER_PREFIX): v.decode(errors="replace")
        for k, v in headers
        if k.startswith(HEADER_PREFIX)
    }


def _headers(*pairs: tuple[str, str]) -> list[tuple[str, bytes]]:
    return [(HEADER_PREFIX + k, v.encode()) for k, v in pairs]


def is_replay_marker(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> bool:
    """Whether a record of the dead-letter topic is a replay marker rather than a dead letter."""
    return any(key == REPLAY_MARKER_HEADER for key, _ in headers)
