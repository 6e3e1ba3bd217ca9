"""Conversation threads: which thread a message belongs to, and when a new one starts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.base import ExecutionKind, Stage
from processors.text import jaccard, tokenize
from schemas.context import ProcessorContext, SessionSnapshot, SessionUpdate

_MARKERS = re.compile(
    r"\b(new topic|different topic|change of subject|unrelated|anyway|anyways|btw|by the way|"
    r"on another note|different question|another question)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ThreadRules:
    """When a new thread starts. ``min_words`` guards the topic-shift test against short replies
    ("ok", "sure") that share no words with anything."""

    idle_gap: timedelta = timedelta(minutes=10)
    shift_threshold: float = 0.08
    min_words: int = 4
    context_messages: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.context_messages, int) or self.context_messages < 1:
            raise ValueError("context_messages must be a whole number, at least 1")


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    thread_number: int
    new_thread: bool
    reason: str  # first | idle_gap | marker | topic_shift | continuation


# A word that each marker holds: ASCII text holding none of them (most) needs no regex scan.
# Only ASCII text is prefiltered: there, matching regardless of case is plain lowercasing,
# while elsewhere the regex also equates letters that ``lower`` and ``casefold`` keep apart
# (a dotted capital I matches "i").
_MARKER_WORDS = ("topic", "subject", "unrelated", "anyway", "btw", "way", "note", "question")


def has_marker(content: str) -> bool:
    """True if the content says it changes the subject ("btw", "new topic", "anyway", ...)."""
    if content.isascii():
        lowered = content.lower()
        for word in _MARKER_WORDS:
            if word in lowered:
                break
        else:
            return False
    return _MARKERS.search(content) is not None


def thread_words(session: SessionSnapshot, rules: ThreadRules) -> set[str]:
    """Content words of the current thread's last ``context_messages`` messages."""
    words: set[str] = set()
    wanted, thread = rules.context_messages, session.current_thread_id
    for message in reversed(session.recent_messages):  # newest first: stop at the last wanted
        if message.thread_id == thread:
            words.update(tokenize(message.content))
            wanted -= 1
            if not wanted:
                break
    return words


def is_topic_shift(content: str, session: SessionSnapshot, rules: ThreadRules) -> bool:
    """Low word overlap with the current thread, judged only when both sides have enough words."""
    current = set(tokenize(content))
    previous = thread_words(session, rules)
    if len(current) < rules.min_words or len(previous) < rules.min_words:
        return False
    return jaccard(current, previous) < rules.shift_threshold


def _aware(moment: datetime) -> datetime:
    # Snapshots written by older code may hold naive UTC datetimes; comparing would raise.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def decide(content: str, at: datetime, session: SessionSnapshot, rules: ThreadRules) -> ThreadDecision:
    """Pure thread decision; precedence: first > idle_gap > marker > topic_shift > continuation."""
    number = session.thread_count
    if session.current_thread_id is None:
        return ThreadDecision(number + 1, True, "first")
    last = session.last_activity
    if last is not None and _aware(at) - _aware(last) >= rules.idle_gap:
        return ThreadDecision(number + 1, True, "idle_gap")
    if has_marker(content):
        return ThreadDecision(number + 1, True, "marker")
    if is_topic_shift(content, session, rules):
        return ThreadDecision(number + 1, True, "topic_shift")
    return ThreadDecision(max(number, 1), False, "continuation")


def thread_id_for(session_id: str, thread_number: int) -> str:
    """Deterministic thread id: ``"{session_id}#{thread_number}"``."""
    return f"{session_id}#{thread_number}"


@dataclass(slots=True)
class ThreadProcessor:
    """Assigns the event to a conversation thread (cheap and pure: runs on the event loop).

    Data: thread_id, new_thread, reason, thread_message_index (0 for the message opening a
    thread; otherwise the count of earlier messages of the thread within the session's recent
    history window, so it saturates at the history size). Raises nothing.
    """

    rules: ThreadRules = ThreadRules()
    name: str = "thread"
    kind: ExecutionKind = ExecutionKind.ASYNC
    never_waits: bool = True  # pure: its coroutine never suspends
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 2.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        session = context.session
        decision = decide(context.event.content, context.event.timestamp, session, self.rules)
        if decision.new_thread or session.current_thread_id is None:
            thread_id, index = thread_id_for(session.session_id, decision.thread_number), 0
        else:
            thread_id = session.current_thread_id
            index = [m.thread_id for m in session.recent_messages].count(thread_id)
        return {
            "thread_id": thread_id,
            "new_thread": decision.new_thread,
            "reason": decision.reason,
            "thread_message_index": index,
        }

    def session_update(self, data: Mapping[str, Any]) -> SessionUpdate:
        """The session moves to the thread chosen for this event."""
        thread_id = data.get("thread_id")
        return SessionUpdate(thread_id=thread_id if isinstance(thread_id, str) else None,
                             new_thread=bool(data.get("new_thread")))
