"""Malformed inbound records, one line per case: name, key, value, expected stage and error type.

Stages and types are those of ``schemas.codec.DecodeError`` as written into the dead-letter
headers ``chatstream.dlq.error.stage`` / ``chatstream.dlq.error.type``. Limits assumed are the
defaults: 64 KiB per record, 4000 content characters, metadata 8 KiB and 5 levels deep.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

_GOOD: dict[str, Any] = {"event_id": "poison", "bot_id": "poison-bot", "channel_id": "poison-ch",
                         "user_id": "poison-user", "content": "hello"}


class Case(NamedTuple):
    name: str
    key: bytes | None
    value: bytes | None
    stage: str
    error_type: str  # alternatives separated by "|"


def _event(**changes: Any) -> bytes:
    """The good event with fields replaced (a value of ``...`` removes the field)."""
    document = {**_GOOD, **changes}
    return orjson.dumps({k: v for k, v in document.items() if v is not ...})


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _raw_nested_metadata(depth: int) -> bytes:
    """Metadata nested ``depth`` levels, written by hand (orjson writes at most 254 levels)."""
    return (_event(metadata=None)[:-len(b'null}')] + b'{"n":' * depth + b"1" + b"}" * depth + b"}")


K = b"poison"
CASES: list[Case] = [
    # -- json: the value is not a JSON document at all ---------------------------------------
    Case("empty-value", K, b"", "json", "EmptyValue"),
    Case("null-value-tombstone", K, None, "json", "EmptyValue"),
    Case("truncated-object", K, b'{"event_id": "x", "content": ', "json", "InvalidJSON"),
    Case("trailing-comma", K, b'{"event_id": "x",}', "json", "InvalidJSON"),
    Case("single-quotes", K, b"{'event_id': 'x'}", "json", "InvalidJSON"),
    Case("unquoted-keys", K, b"{event_id: 1}", "json", "InvalidJSON"),
    Case("nan-literal", K, _event()[:-1] + b', "score": NaN}', "json", "InvalidJSON"),
    Case("infinity-literal", K, _event()[:-1] + b', "score": Infinity}', "json", "InvalidJSON"),
    Case("minus-infinity-literal", K, _event()[:-1] + b', "score": -Infinity}', "json", "InvalidJSON"),
    Case("number-overflows-double", K, _event()[:-1] + b', "score": 1e400}', "json", "InvalidJSON"),
    Case("invalid-utf8-in-string", K, _event()[:-2] + b'\xff\xfe"}', "json", "InvalidJSON"),
    Case("invalid-utf8-garbage", K, b"\xff\xfe\xfd not even text", "json", "InvalidJSON"),
    Case("lone-surrogate-escape", K, _event()[:-2] + b'\\ud800"}', "json", "InvalidJSON"),
    Case("utf16-encoded", K, _event().decode().encode("utf-16"), "json", "InvalidJSON"),
    Case("two-documents", K, _event() + _event(), "json", "InvalidJSON"),
    Case("plain-text", K, b"hello bot", "json", "InvalidJSON"),
    Case("whitespace-only", K, b"   \n\t ", "json", "InvalidJSON"),
    Case("nul-bytes", K, b"\x00\x00\x00\x00", "json", "InvalidJSON"),
    Case("javascript-comment", K, b"// hi\n" + _event(), "json", "InvalidJSON"),
    Case("nesting-beyond-parser-limit", K, _raw_nested_metadata(1100), "json", "InvalidJSON"),
    Case("null-key-and-broken-json", None, b'{"event_id": ', "json", "InvalidJSON"),
    Case("null-key-and-null-value", None, None, "json", "EmptyValue"),
    # -- size: over max_record_bytes, refused before parsing ---------------------------------
    Case("oversize-record", K, _event(content="x" * 3000, metadata={"pad": "y" * 70_000}),
         "size", "RecordTooLarge"),
    Case("oversize-garbage", K, b"\x00" * 100_000, "size", "RecordTooLarge"),
    # -- validation: JSON, but not an object -------------------------------------------------
    Case("array", K, b"[1, 2, 3]", "validation", "NotAnObject"),
    Case("array-of-events", K, b"[" + _event() + b"]", "validation", "NotAnObject"),
    Case("string", K, b'"hello"', "validation", "NotAnObject"),
    Case("number", K, b"42", "validation", "NotAnObject"),
    Case("true", K, b"true", "validation", "NotAnObject"),
    Case("false", K, b"false", "validation", "NotAnObject"),
    Case("json-null", K, b"null", "validation", "NotAnObject"),
    # -- validation: an object that is not a ChatEvent ---------------------------------------
    Case("empty-object", K, b"{}", "validation", "ValidationError"),
    Case("missing-event-id", K, _event(event_id=...), "validation", "ValidationError"),
    Case("missing-content", K, _event(content=...), "validation", "ValidationError"),
    Case("missing-user-id", K, _event(user_id=...), "validation", "ValidationError"),
    Case("null-event-id", K, _event(event_id=None), "validation", "ValidationError"),
    Case("null-content", K, _event(content=None), "validation", "ValidationError"),
    Case("null-bot-id", K, _event(bot_id=None), "validation", "ValidationError"),
    Case("event-id-number", K, _event(event_id=12345), "validation", "ValidationError"),
    Case("event-id-huge-integer", K, _event()[:-1] + b', "event_id": 123456789012345678901234567890}',
         "validation", "ValidationError"),
    Case("content-number", K, _event(content=7), "validation", "ValidationError"),
    Case("content-boolean", K, _event(content=True), "validation", "ValidationError"),
    Case("content-array", K, _event(content=["hi"]), "validation", "ValidationError"),
    Case("content-object", K, _event(content={"text": "hi"}), "validation", "ValidationError"),
    Case("channel-id-object", K, _event(channel_id={"id": 1}), "validation", "ValidationError"),
    Case("user-id-boolean", K, _event(user_id=False), "validation", "ValidationError"),
    Case("event-id-empty", K, _event(event_id=""), "validation", "ValidationError"),
    Case("event-id-too-long", K, _event(event_id="e" * 129), "validation", "ValidationError"),
    Case("oversize-content", K, _event(content="x" * 4001), "validation", "ValidationError"),
    Case("metadata-list", K, _event(metadata=[1, 2]), "validation", "ValidationError"),
    Case("metadata-string", K, _event(metadata="meta"), "validation", "ValidationError"),
    Case("metadata-too-deep", K, _event(metadata=_nested(6)), "validation", "ValidationError"),
    # Deeper than orjson's own nesting limit (1024) is invalid JSON; below it the depth check
    # (iterative, stopping at the limit) names the limit.
    Case("metadata-very-deep", K, _raw_nested_metadata(900), "validation", "ValidationError"),
    Case("metadata-oversize", K, _event(metadata={"blob": "z" * 9000}), "validation", "ValidationError"),
    Case("schema-version-2", K, _event(schema_version=2), "validation", "ValidationError"),
    Case("schema-version-string", K, _event(schema_version="1"), "validation", "ValidationError"),
    Case("schema-version-null", K, _event(schema_version=None), "validation", "ValidationError"),
    Case("priority-unknown", K, _event(priority="urgent"), "validation", "ValidationError"),
    Case("priority-number", K, _event(priority=0), "validation", "ValidationError"),
    Case("message-type-unknown", K, _event(message_type="voice"), "validation", "ValidationError"),
    Case("timestamp-words", K, _event(timestamp="yesterday"), "validation", "ValidationError"),
    Case("timestamp-numeric-string", K, _event(timestamp="1700000000"), "validation", "ValidationError"),
    Case("timestamp-huge-number", K, _event()[:-1] + b', "timestamp": 1000000000000000000000000000000}',
         "validation", "ValidationError"),
    Case("timestamp-negative", K, _event(timestamp=-5), "validation", "ValidationError"),
    Case("timestamp-boolean", K, _event(timestamp=True), "validation", "ValidationError"),
    Case("every-field-an-array", K, orjson.dumps({k: [v] for k, v in _GOOD.items()}),
         "validation", "ValidationError"),
]
