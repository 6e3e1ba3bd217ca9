"""Dead-letter records: the original key and bytes unchanged, the reason in headers."""

from __future__ import annotations

from schemas.codec import DecodeError
from stream.records import Delivery, RecordSource

HEADER_PREFIX = "chatstream.dlq."
_MAX_MESSAGE_BYTES = 1024


def dead_letter(topic: str, source: RecordSource, value: bytes | None, error: DecodeError) -> Delivery:
    """The DLQ record for an inbound record that could not be decoded.

    The source's own headers (trace context included) are kept ahead of the reason headers, so
    a reader of the DLQ can follow the original trace.
    """
    reason = [
        ("error.type", error.error_type),
        ("error.message", error.message.encode(errors="replace")[:_MAX_MESSAGE_BYTES].decode(
            errors="ignore")),
        ("error.stage", error.stage),
        ("source.topic", source.tp.topic),
        ("source.partition", str(source.tp.partition)),
        ("source.offset", str(source.offset)),
    ]
    headers = list(source.headers) + [(HEADER_PREFIX + k, v.encode()) for k, v in reason]
    return Delivery(topic=topic, key=source.key, value=value, headers=headers)


def reason_of(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """The reason headers of a DLQ record, without the prefix."""
    return {
        k.removeprefix(HEADER_PREFIX): v.decode(errors="replace")
        for k, v in headers
        if k.startswith(HEADER_PREFIX)
    }
