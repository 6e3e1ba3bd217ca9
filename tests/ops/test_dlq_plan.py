"""The pure parts of the dlq tools: what a replay selects, skips and prints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream.kafka.dead_letter import HEADER_PREFIX, REPLAYED_FROM_HEADER
from stream.ops.dlq import ReplayReport, Selection, parse_since, plan_replay, replay_headers
from stream.ops.dlq_records import DeadLetter
from stream.ops.dlq_report import render_replay


def letter(offset: int, *, source_offset: int, stage: str = "processing", partition: int = 0,
           timestamp_ms: int = 1000, dropped: bool = False) -> DeadLetter:
    reason = {"error.stage": stage, "error.type": "RuntimeError", "error.message": "boom",
              "source.topic": "in", "source.partition": "2", "source.offset": str(source_offset)}
    if dropped:
        reason["value.dropped"] = "MessageSizeTooLargeError"
    headers = (("traceparent", b"tp"), *((HEADER_PREFIX + k, v.encode()) for k, v in reason.items()))
    return DeadLetter("dlq", partition, offset, timestamp_ms, b"key", b"value", headers, reason)


def test_since_reads_offsets_and_plain_times_as_utc():
    """--since takes ISO 8601 with or without an offset; without one it means UTC."""
    assert parse_since("2026-05-01T12:00:00Z") == parse_since("2026-05-01T14:00:00+02:00")
    assert parse_since("2026-05-01T12:00:00") == int(
        datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("yesterday")


def test_selection_matches_every_given_criterion():
    """Stage, error type and time all have to match; None matches anything."""
    late = letter(1, source_offset=1, timestamp_ms=5000)
    assert Selection().matches(late)
    assert Selection(stage="processing", error_type="RuntimeError", since_ms=5000).matches(late)
    assert not Selection(stage="validation").matches(late)
    assert Selection(error_type="runtimeerror").matches(late)  # as typed, in any case
    assert not Selection(error_type="Runtime").matches(late)
    assert not Selection(since_ms=5001).matches(late)


def test_plan_keeps_the_original_order_and_says_why_it_skips():
    """Replays follow the source offsets; dropped bytes, markers and foreign records skip."""
    foreign = DeadLetter("dlq", 0, 9, 1000, None, b"x", (), {})
    letters = [letter(5, source_offset=30), letter(6, source_offset=10),
               letter(7, source_offset=20, dropped=True), letter(8, source_offset=40), foreign]
    plan = plan_replay(letters, {(0, 8)})
    assert [item.offset for item in plan.replay] == [6, 5]
    reasons = {item.offset: why for item, why in plan.skipped}
    assert reasons[7].startswith("cannot be replayed")
    assert reasons[8].startswith("already replayed")
    assert reasons[9].startswith("not a chatstream dead letter")
    assert [item.offset for item in plan_replay(letters, {(0, 8)}, force=True).replay] == [
        6, 5, 8]


def test_replay_headers_drop_the_reasons_and_name_the_dead_letter():
    """The original headers stay in order; the reason headers go; replayed-from is added."""
    assert replay_headers(letter(5, source_offset=1)) == [
        ("traceparent", b"tp"), (REPLAYED_FROM_HEADER, b"dlq/0/5")]


def test_report_lines_name_each_dead_letter_and_the_totals():
    """One line per replayed, skipped or failed dead letter, then the counts."""
    report = ReplayReport(dry_run=False, replayed=[(letter(5, source_offset=1), "in/2/77")],
                          skipped=[(letter(6, source_offset=2), "already replayed")])
    lines = render_replay(report).splitlines()
    assert lines[0].startswith("replayed dlq/0/5 -> in/2/77 (stage processing, RuntimeError")
    assert lines[1] == "skipped dlq/0/6: already replayed"
    assert lines[-1] == "replayed 1, skipped 1, failed 0"


def test_a_record_dead_lettered_twice_is_replayed_once():
    """A member that crashed between a dead letter's ack and its commit dead-letters the same
    inbound record again: the replay republishes it once, its first dead letter."""
    letters = [letter(5, source_offset=30), letter(6, source_offset=30),
               letter(7, source_offset=31)]
    plan = plan_replay(letters, set())
    assert [item.offset for item in plan.replay] == [5, 7]
    assert [(item.offset, why) for item, why in plan.skipped] == [
        (6, "the same record as dlq/0/5, dead-lettered again")]


def test_a_source_record_cannot_bring_its_own_reasons_or_pass_for_a_marker():
    """Headers only chatstream writes in the dead-letter topic are dropped from the source
    record's: a bot's record carrying them would otherwise skew the counts and the replays."""
    from aiokafka.structs import TopicPartition

    from stream.kafka.dead_letter import (
        REPLAY_MARKER_HEADER,
        FailureReason,
        dead_letter,
        is_replay_marker,
        reason_of,
    )
    from stream.kafka.records import RecordSource

    forged = (("traceparent", b"tp"), (REPLAY_MARKER_HEADER, b"0/10"),
              (HEADER_PREFIX + "error.stage", b"forged"), (REPLAYED_FROM_HEADER, b"dlq/0/3"))
    source = RecordSource(TopicPartition("in", 1), 42, b"k", forged, value=b"{}")
    delivery = dead_letter("dlq", source, b"{}", FailureReason("processing", "RuntimeError", "x"))
    assert not is_replay_marker(delivery.headers)
    assert reason_of(delivery.headers)["error.stage"] == "processing"
    assert [k for k, _ in delivery.headers if not k.startswith(HEADER_PREFIX)] == [
        "traceparent", REPLAYED_FROM_HEADER]
