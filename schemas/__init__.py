"""Types that cross a process boundary, and their byte codec. Nothing here does I/O."""

from __future__ import annotations

from schemas.codec import DecodeError, decode_event, encode
from schemas.context import HistoryMessage, ProcessorContext, SessionSnapshot, SessionUpdate
from schemas.events import (
    ChatEvent,
    MessageType,
    Priority,
    ProcessorOutcome,
    ProcessorStatus,
    ResponseEvent,
    response_id_for,
)
from schemas.limits import InputLimits

__all__ = [
    "ChatEvent",
    "DecodeError",
    "HistoryMessage",
    "InputLimits",
    "MessageType",
    "Priority",
    "ProcessorContext",
    "ProcessorOutcome",
    "ProcessorStatus",
    "ResponseEvent",
    "SessionSnapshot",
    "SessionUpdate",
    "decode_event",
    "encode",
    "response_id_for",
]
