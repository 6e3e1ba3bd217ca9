"""A session's state as changelog records: what the changelog stores and restores.

Rules:
1. A session is a *header* (key, counters, thread, emotion trajectory) and one record per
   message of its history window, in the window's slot ``(n - 1) % size`` where ``n`` counts
   the session's messages from 1 (``slot_of``). An answer writes one record (version 3,
   ``answer_record``): the newest message in its slot, carrying the session's header as it
   is after that message; so a record costs the same whatever the window's length, and slots
   overwrite themselves as the window slides. Each life of a session (from its first answer,
   or its restore from a version 2 header, to its end) has an *incarnation*: its first answer
   also writes a marker under the session's own key (``marker_record``), and its headers name
   it. A session is restored only while its marker (or version 2 header) is there; its header
   is the one, of its incarnation, written last (``restorable``), so the slots another life of
   the key left behind never bring that life back. Caches and the memory index are not
   stored; processors rebuild them from the restored history on the session's next event.
2. ``from_records`` keeps the messages numbered ``count - size < n <= count`` of the header's
   ``count``, in order: a slot left from an earlier session of the same key (evicted, then
   started again) always falls outside that range. Of those, only the newest run with no
   number missing: after the window's size changed within a life, the slots written under
   the old size lie beside newer ones (older messages the window had let go of, a gap where a
   newer one overwrote a slot), and a history must not skip messages.
3. A record of another version or shape is refused (``ValueError``), so a corrupt changelog
   record costs that one session its history, never the member. Version 2 (a header record
   keyed by the session, and message records without a header) and the whole-session
   documents of version 1 are still read.
4. Times: ``last_message_at`` is wall clock (kept); ``created_at`` and ``last_activity`` are the
   restoring member's monotonic ``now`` (monotonic clocks do not travel between processes).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.context import HistoryMessage
from stream.engine.sessions import (
    EMOTION_TRAJECTORY_SIZE,
    SessionKey,
    SessionState,
)

__all__ = ["DOCUMENT_VERSION", "SessionRecords", "answer_record", "from_document",
           "from_records", "marker_record", "restorable", "session_records", "slot_of"]

DOCUMENT_VERSION = 3
_HEADER_AND_SLOTS_VERSION = 2  # a header record of its own, slots without a header
_WHOLE_DOCUMENT_VERSION = 1
_SLOT_VERSIONS = (_HEADER_AND_SLOTS_VERSION, DOCUMENT_VERSION)


@dataclass(slots=True)  # not frozen: built once per answer, and a frozen init costs a call per field
class SessionRecords:
    """What one answer writes: the session's header and, when it has one, its newest message
    (in ``slot``). Documents to be encoded by orjson."""

    header: dict[str, Any]
    message: dict[str, Any] | None
    slot: int
    opens: bool = False  # the first records of the session's incarnation: write its marker


def slot_of(n: int, history_size: int) -> int:
    """The window slot of the session's ``n``-th message (counted from 1)."""
    return (n - 1) % history_size


def session_records(state: SessionState) -> SessionRecords:
    """The header of ``state`` after its latest event and, when it has one, that message. The
    first call for a session gives it its incarnation (``opens``)."""
    opens = state.changelog_incarnation is None
    if opens:
        state.changelog_incarnation = uuid.uuid4().hex
    count = state.message_count
    message = None
    if state.recent_messages:
        message = {"version": DOCUMENT_VERSION, "n": count,
                   "message": state.recent_messages[-1]}
    size = state.recent_messages.maxlen or 1
    return SessionRecords(header={
        "version": DOCUMENT_VERSION,
        "key": state.key,
        "message_count": count,
        "current_thread_id": state.current_thread_id,
        "thread_count": state.thread_count,
        "emotion_trajectory": tuple(state.emotion_trajectory),
        "last_message_at": state.last_message_at,
        "incarnation": state.changelog_incarnation,
    }, message=message, slot=slot_of(max(count, 1), size), opens=opens)


def answer_record(records: SessionRecords) -> dict[str, Any]:
    """The one record an answer writes, in ``records.slot`` (rule 1): the newest message with
    the session's header. ``records`` must hold a message."""
    assert records.message is not None, "an answered session holds its newest message"
    return {**records.message, "header": records.header}


def marker_record(records: SessionRecords) -> dict[str, Any]:
    """The record under the session's own key that says its incarnation is alive (rule 1)."""
    return {"version": DOCUMENT_VERSION, "incarnation": records.header["incarnation"]}


def restorable(own: tuple[int, Any] | None, slots: Iterable[tuple[int, Any]]
               ) -> tuple[int, Any, list[Any]] | None:
    """What restores a session (rule 1), from the record under its own key and its slot
    records, each with the offset it was written at: (the header's offset, the header, the
    messages for ``from_records``), or None when the session is not to be restored (it ended,
    or its records say nothing of a live incarnation).

    A version 1 or 2 header under its own key is the header; a version 3 marker names the
    incarnation whose latest slot holds the header. Slots of another incarnation are left out.
    """
    if own is None or not isinstance(own[1], dict):
        return None
    offset, document = own
    written = list(slots)
    if document.get("version") != DOCUMENT_VERSION:  # a header of version 1 or 2
        return offset, document, [record for _, record in written if _of_life(record, None)]
    ours = [(at, record) for at, record in written
            if _of_life(record, document.get("incarnation"))]
    headers = [(at, record["header"]) for at, record in ours
               if record["version"] == DOCUMENT_VERSION]
    if not headers:
        return None
    at, header = max(headers, key=lambda found: found[0])
    return at, header, [record for _, record in ours]


def _of_life(record: Any, incarnation: str | None) -> bool:
    """A slot record of the life ``incarnation`` names: a version 3 slot whose header names it,
    or a version 2 slot (which names none; the window keeps only the life's own). A value
    that is not a JSON object is no slot at all; an object of another shape is left to
    ``from_records`` to refuse."""
    if not isinstance(record, dict):
        return False
    if record.get("version") != DOCUMENT_VERSION:
        return True
    header = record.get("header")
    return isinstance(header, dict) and header.get("incarnation") == incarnation


def from_records(header: Any, messages: Iterable[Any], now: float,
                 history_size: int) -> SessionState:
    """The session a header and its slots' messages describe (orjson-decoded; rule 2);
    ``ValueError`` when they are not valid records."""
    try:
        if header["version"] == _WHOLE_DOCUMENT_VERSION:
            return from_document(header, now, history_size)
        if header["version"] not in _SLOT_VERSIONS:
            raise ValueError(f"session record version {header['version']!r} is unknown")
        state = _with_counters(header, now, history_size)
        count = state.message_count
        in_window = {int(m["n"]): m["message"] for m in messages
                     if m.get("version") in _SLOT_VERSIONS
                     and count - history_size < int(m["n"]) <= count}
        if in_window:
            newest = first = max(in_window)
            while first - 1 in in_window:
                first -= 1
            state.recent_messages.extend(_message(in_window[n])
                                         for n in range(first, newest + 1))
        return state
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a session record: {type(exc).__name__}: {exc}") from None


def from_document(document: Any, now: float, history_size: int) -> SessionState:
    """The session a whole-session document of version 1 describes; ``ValueError`` when it
    is not one."""
    try:
        if document["version"] != _WHOLE_DOCUMENT_VERSION:
            raise ValueError(f"session document version {document['version']!r} is unknown")
        state = _with_counters(document, now, history_size)
        state.recent_messages.extend(_message(m) for m in document["recent_messages"])
        return state
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a session document: {type(exc).__name__}: {exc}") from None


def _with_counters(document: Any, now: float, history_size: int) -> SessionState:
    key: SessionKey = tuple(str(part) for part in document["key"])
    if len(key) not in (2, 3):
        raise ValueError(f"a session key has 2 or 3 parts, not {len(key)}")
    state = SessionState.new(key, now, history_size)
    state.message_count = int(document["message_count"])
    state.current_thread_id = document["current_thread_id"]
    state.thread_count = int(document["thread_count"])
    state.emotion_trajectory = deque(
        (float(x) for x in document["emotion_trajectory"]), maxlen=EMOTION_TRAJECTORY_SIZE)
    last = document["last_message_at"]
    state.last_message_at = datetime.fromisoformat(last) if last else None
    incarnation = document.get("incarnation")
    state.changelog_incarnation = None if incarnation is None else str(incarnation)
    return state


def _message(m: Any) -> HistoryMessage:
    return HistoryMessage(str(m["event_id"]), str(m["content"]),
                          datetime.fromisoformat(m["timestamp"]),
                          None if m["thread_id"] is None else str(m["thread_id"]))
