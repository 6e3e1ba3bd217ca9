"""orjson <-> pydantic codec. Every failure becomes a ``DecodeError`` naming its stage."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError

from schemas.events import ChatEvent
from schemas.limits import InputLimits

DecodeStage = Literal["size", "json", "validation"]


class DecodeError(Exception):
    """A record that cannot become a ChatEvent; routed to the dead-letter topic."""

    def __init__(self, stage: DecodeStage, error_type: str, message: str) -> None:
        super().__init__(f"{stage}: {error_type}: {message}")
        self.stage = stage
        self.error_type = error_type
        self.message = message


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        # pydantic prefixes the message of a validator's ValueError; the reason reads better bare
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def decode_event(raw: bytes | None, limits: InputLimits | None = None) -> ChatEvent:
    """Bytes of one inbound record -> ChatEvent, or raise DecodeError."""
    limits = limits or InputLimits()
    if raw is None or len(raw) == 0:
        raise DecodeError("json", "EmptyValue", "record value is empty")
    if len(raw) > limits.max_record_bytes:
        raise DecodeError(
            "size", "RecordTooLarge",
            f"record is {len(raw)} bytes, the limit is {limits.max_record_bytes}",
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("json", "InvalidJSON", str(exc)) from None
    if not isinstance(document, dict):
        raise DecodeError(
            "validation", "NotAnObject", f"expected a JSON object, got {type(document).__name__}"
        )
    try:
        return ChatEvent.model_validate(document, context=limits)
    except ValidationError as exc:
        raise DecodeError("validation", "ValidationError", _summarise(exc)) from None
    except (RecursionError, OverflowError) as exc:
        raise DecodeError("validation", type(exc).__name__, str(exc)[:200]) from None


def _fields(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(model: BaseModel) -> bytes:
    """Model -> compact JSON bytes, as ``model_dump(mode="json")`` would give them, in one pass
    of orjson over the fields (enums by value, datetimes in RFC 3339 with "Z")."""
    return orjson.dumps(model.__dict__, default=_fields, option=orjson.OPT_UTC_Z)
