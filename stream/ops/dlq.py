"""Dead-letter tools behind ``chatstream dlq``: what is in the dead-letter topic, and putting
its records back on the inbound topic.

``inspect`` reads the whole topic once (``TopicReader``: bounded by the watermarks of its first
fetch and by timeouts) and keeps only counts and the latest N, so memory does not grow with it.

``replay`` re-publishes each selected dead letter's original key, value and headers to the
inbound topic (the ``chatstream.dlq.*`` reasons removed, ``chatstream.replayed-from`` =
"dlq-topic/partition/offset" added), in their original order, to the partition it was read
from (its conversation's, whatever partitioner the bot used; by the key when the dead letter
came from elsewhere), and waits for the acks. An inbound record dead-lettered twice is
replayed once. For each
acknowledged one it then writes a marker record (header ``chatstream.replay-marker`` =
"partition/offset") into the same partition of the dead-letter topic; a later replay skips
dead letters with a marker unless forced. The markers live in the dead-letter topic because
that works alike on Apache Kafka and the embedded broker: plain produce and consume, no
compaction, no commit metadata (the embedded broker returns it empty), no extra topic or ACL;
and a marker, written after its dead letter in the same partition, is never removed by
retention before it. A consumer-group commit could not do it: replays select, so one offset
cannot say which of the records before it were replayed.

A crash between a replay's ack and its marker replays that record again next time (at least
once, the answer keeps its ``response_id``); it is never lost. A dead letter kept without its
bytes (``chatstream.dlq.value.dropped``) and a record without reason headers (not written by
chatstream) are skipped, saying why. Raises ``DeadLetterToolError`` (one line) when the topic
cannot be read, or, for a replay, cannot be read to its end: markers further on could be missed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from stream.kafka.dead_letter import REPLAYED_FROM_HEADER, is_replay_marker
from stream.ops.dlq_records import STAGES, DeadLetter, DeadLetterToolError, marked_letter
from stream.ops.replay_publish import Published, Replay, publish_replays
from stream.ops.topic_read import TopicReader, TopicUnavailable
from stream.settings import Settings

__all__ = [
    "STAGES", "DeadLetter", "DeadLetterToolError", "Inspection", "ReplayPlan", "ReplayReport",
    "Selection", "inspect", "parse_since", "plan_replay", "replay", "replay_headers",
]


@dataclass
class Inspection:
    """Counts of a dead-letter topic and its latest records, newest first."""

    topic: str
    total: int = 0
    by_stage: Counter[str] = field(default_factory=Counter)
    by_error_type: Counter[str] = field(default_factory=Counter)
    latest: list[DeadLetter] = field(default_factory=list)
    replayed: set[tuple[int, int]] = field(default_factory=set)
    complete: bool = False

    def was_replayed(self, letter: DeadLetter) -> bool:
        return (letter.partition, letter.offset) in self.replayed


class _Tally:
    """Folds records into an ``Inspection``, holding at most ``limit`` of them."""

    def __init__(self, topic: str, limit: int) -> None:
        self.inspection = Inspection(topic)
        self._limit = limit
        self._newest: list[tuple[tuple[int, int, int], DeadLetter]] = []

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if is_replay_marker(record.headers or ()):
            marked = marked_letter(record)
            if marked is not None:
                self.inspection.replayed.add(marked)
            return
        letter = DeadLetter.of(record)
        self.inspection.total += 1
        self.inspection.by_stage[letter.stage] += 1
        self.inspection.by_error_type[letter.error_type] += 1
        if self._limit > 0:
            # (partition, offset) make the sort key unique: letters themselves are never compared
            entry = ((letter.timestamp_ms, letter.partition, letter.offset), letter)
            if len(self._newest) < self._limit:
                heapq.heappush(self._newest, entry)
            else:
                heapq.heappushpop(self._newest, entry)

    def result(self, complete: bool) -> Inspection:
        self.inspection.latest = [letter for _, letter in sorted(self._newest, reverse=True)]
        self.inspection.complete = complete
        return self.inspection


async def inspect(settings: Settings, *, limit: int = 10, idle_timeout_s: float = 5.0,
                  deadline_s: float = 120.0) -> Inspection:
    """Counts by stage and error type and the latest ``limit`` dead letters of the DLQ topic."""
    tally = _Tally(settings.dlq_topic, limit)
    reader = TopicReader(settings, settings.dlq_topic, idle_timeout_s=idle_timeout_s,
                         deadline_s=deadline_s, client_id="chatstream-dlq-inspect")
    try:
        async for record in reader.records():
            tally.add(record)
    except TopicUnavailable as exc:
        raise DeadLetterToolError(str(exc)) from None
    return tally.result(reader.complete)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to replay; None matches anything. ``since_ms``: dead-lettered at or
    after this time (the DLQ record's timestamp)."""

    stage: str | None = None
    error_type: str | None = None
    since_ms: int | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return ((self.stage is None or letter.stage == self.stage)
                and (self.error_type is None
                     or letter.error_type.casefold() == self.error_type.casefold())
                and (self.since_ms is None or letter.timestamp_ms >= self.since_ms))


def parse_since(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time; ``ValueError`` saying what is expected."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time, e.g. 2026-05-01T12:00:00+02:00"
                         ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the same command means the same on every host
    return int(moment.timestamp() * 1000)


@dataclass
class ReplayPlan:
    """Dead letters to replay, in their original order, and the ones skipped with why."""

    replay: list[DeadLetter] = field(default_factory=list)
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)


def _original_order(letter: DeadLetter) -> tuple[str, int, int, int, int]:
    # A conversation's events are replayed in the order they first arrived in.
    source_partition = int(letter.reason.get("source.partition", "-1") or -1)
    source_offset = int(letter.reason.get("source.offset", "-1") or -1)
    return (letter.reason.get("source.topic", ""), source_partition, source_offset,
            letter.partition, letter.offset)


def _why_not(letter: DeadLetter, replayed: set[tuple[int, int]], force: bool) -> str | None:
    if not letter.reason:
        return "not a chatstream dead letter (no chatstream.dlq.* headers)"
    dropped = letter.reason.get("value.dropped")
    if dropped is not None:
        return f"cannot be replayed: its bytes were not kept ({dropped})"
    if not force and (letter.partition, letter.offset) in replayed:
        return "already replayed (--force replays it again)"
    return None


def plan_replay(selected: Iterable[DeadLetter], replayed: set[tuple[int, int]], *,
                force: bool = False) -> ReplayPlan:
    """Split the selected dead letters into those to replay and those to skip (pure). An
    inbound record dead-lettered twice (a member that crashed before committing it) is
    replayed once: its first dead letter."""
    plan = ReplayPlan()
    first_of: dict[str, DeadLetter] = {}
    for letter in sorted(selected, key=_original_order):
        why = _why_not(letter, replayed, force)
        source = letter.source
        if why is None and source is not None:
            if source in first_of:
                why = f"the same record as {first_of[source].address}, dead-lettered again"
            else:
                first_of[source] = letter
        if why is None:
            plan.replay.append(letter)
        else:
            plan.skipped.append((letter, why))
    return plan


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers, trace context included, plus where this replay comes from."""
    return [*letter.original_headers, (REPLAYED_FROM_HEADER, letter.address.encode())]


@dataclass
class ReplayReport:
    """What a replay did: ``replayed`` holds (letter, destination), None in a dry run."""

    dry_run: bool
    replayed: list[tuple[DeadLetter, str | None]] = field(default_factory=list)
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    unmarked: list[tuple[DeadLetter, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unmarked


async def _read_for_replay(settings: Settings, selection: Selection, idle_timeout_s: float,
                           deadline_s: float) -> tuple[list[DeadLetter], set[tuple[int, int]]]:
    reader = TopicReader(settings, settings.dlq_topic, idle_timeout_s=idle_timeout_s,
                         deadline_s=deadline_s, client_id="chatstream-dlq-replay")
    selected: list[DeadLetter] = []
    replayed: set[tuple[int, int]] = set()
    try:
        async for record in reader.records():
            if is_replay_marker(record.headers or ()):
                marked = marked_letter(record)
                if marked is not None:
                    replayed.add(marked)
            elif selection.matches(letter := DeadLetter.of(record)):
                selected.append(letter)
    except TopicUnavailable as exc:
        raise DeadLetterToolError(str(exc)) from None
    if not reader.complete:
        raise DeadLetterToolError(
            f"could not read {settings.dlq_topic} to its end (no record for {idle_timeout_s}s "
            f"or over {deadline_s}s): nothing replayed")
    return selected, replayed


async def replay(settings: Settings, selection: Selection, *, dry_run: bool = False,
                 force: bool = False, idle_timeout_s: float = 5.0, deadline_s: float = 120.0
                 ) -> ReplayReport:
    """Replay the selected dead letters to the inbound topic (see the module docstring)."""
    selected, replayed = await _read_for_replay(settings, selection, idle_timeout_s, deadline_s)
    plan = plan_replay(selected, replayed, force=force)
    report = ReplayReport(dry_run=dry_run, skipped=plan.skipped)
    if dry_run or not plan.replay:
        report.replayed = [(letter, None) for letter in plan.replay]
        return report
    try:
        published = await publish_replays(settings, [
            Replay(letter.key, letter.value, replay_headers(letter), letter.partition,
                   letter.offset, _inbound_partition(letter, settings.inbound_topic))
            for letter in plan.replay], timeout_s=deadline_s)
    except TopicUnavailable as exc:
        raise DeadLetterToolError(f"{exc}: nothing replayed") from None
    _record(report, plan.replay, published)
    return report


def _inbound_partition(letter: DeadLetter, inbound_topic: str) -> int | None:
    """The inbound partition the record was read from, when it came from the inbound topic:
    its conversation lives there, whatever partitioner the bot used."""
    partition = letter.reason.get("source.partition", "")
    if letter.reason.get("source.topic") != inbound_topic or not partition.isdigit():
        return None
    return int(partition)


def _record(report: ReplayReport, letters: list[DeadLetter], published: list[Published]) -> None:
    for letter, outcome in zip(letters, published, strict=True):
        if outcome.destination is None:
            report.failed.append((letter, outcome.error or "not acknowledged"))
            continue
        report.replayed.append((letter, outcome.destination))
        if outcome.error is not None:
            report.unmarked.append((letter, outcome.error))
