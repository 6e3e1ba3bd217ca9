"""The records of the dead-letter topic as the dlq tools see them: a dead letter with its
parsed reason, and the replay markers that say which dead letters were replayed. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from aiokafka.structs import ConsumerRecord

from schemas.codec import DecodeStage
from stream.kafka.dead_letter import (
    HEADER_PREFIX,
    REPLAY_MARKER_HEADER,
    REPLAYED_FROM_HEADER,
    reason_of,
)

STAGES = (*get_args(DecodeStage), "processing", "publish")


class DeadLetterToolError(Exception):
    """The dead-letter topic cannot be read (or written); ``str()`` is one line."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic as stored, with its reason headers parsed."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: Mapping[str, str]

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        headers = tuple(record.headers or ())
        return cls(record.topic, record.partition, record.offset, record.timestamp,
                   record.key, record.value, headers, reason_of(headers))

    @property
    def address(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def stage(self) -> str:
        return self.reason.get("error.stage", "unknown")

    @property
    def error_type(self) -> str:
        return self.reason.get("error.type", "unknown")

    @property
    def source(self) -> str | None:
        parts = [self.reason.get(f"source.{k}") for k in ("topic", "partition", "offset")]
        return "/".join(p for p in parts if p is not None) if all(parts) else None

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]

    @property
    def replayed_from(self) -> list[str]:
        """Dead letters this record was replayed from earlier, oldest first."""
        return [v.decode(errors="replace") for k, v in self.headers if k == REPLAYED_FROM_HEADER]


def marked_letter(record: ConsumerRecord[bytes, bytes]) -> tuple[int, int] | None:
    """(partition, offset) of the dead letter a replay marker stands for; None if malformed."""
    for key, value in record.headers or ():
        if key == REPLAY_MARKER_HEADER:
            partition, _, offset = value.decode(errors="replace").partition("/")
            if partition.isdigit() and offset.isdigit():
                return int(partition), int(offset)
    return None


def describe(letter: DeadLetter, replayed: bool = False) -> dict[str, Any]:
    """A dead letter as JSON-ready data: where it is, why it is there, where it came from."""
    return {
        "partition": letter.partition, "offset": letter.offset,
        "timestamp": datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC).isoformat(
            timespec="milliseconds"),
        "stage": letter.stage, "error_type": letter.error_type,
        "message": letter.reason.get("error.message", ""), "source": letter.source,
        "key": letter.key.decode(errors="replace") if letter.key is not None else None,
        "value_bytes": len(letter.value) if letter.value is not None else None,
        "value_dropped": letter.reason.get("value.dropped"),
        "replayed": replayed, "replayed_from": letter.replayed_from,
    }
