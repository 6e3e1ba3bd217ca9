"""`chatstream dlq inspect` and `replay` against the real broker."""

from __future__ import annotations

import time

import pytest
from dlq_fixtures import HOUR_MS, TRACEPARENT, Letter, write_letters
from kafka_helpers import read_to_end

from stream.kafka.dead_letter import REPLAY_MARKER_HEADER, REPLAYED_FROM_HEADER, is_replay_marker
from stream.kafka.topics import ensure_topics
from stream.ops.dlq import Selection, inspect, replay

pytestmark = pytest.mark.kafka

LETTERS = [
    Letter(b"k-json", b'{"event_id": ', "json", "InvalidJSON", partition=0, age_ms=3 * HOUR_MS),
    Letter(b"k-val-1", b'{"event_id": 1}', "validation", "ValidationError", partition=1,
           age_ms=2 * HOUR_MS, source_offset=4),
    Letter(b"k-val-2", b'{"content": 7}', "validation", "ValidationError", partition=1,
           source_offset=9),
    Letter(b"k-proc", b'{"event_id": "p"}', "processing", "RuntimeError", partition=2),
    Letter(b"k-dropped", None, "publish", "MessageSizeTooLargeError", partition=3,
           dropped=True),
]


async def _with_letters(settings_for):  # type: ignore[no-untyped-def]
    settings = settings_for()
    await ensure_topics(settings)
    await write_letters(settings, LETTERS)
    return settings


async def test_inspect_counts_by_stage_and_error_type_and_lists_the_latest(settings_for):
    """Counts cover every dead letter; the latest N come newest first with their reasons."""
    settings = await _with_letters(settings_for)
    found = await inspect(settings, limit=2, idle_timeout_s=5)
    assert found.complete and found.total == 5
    assert found.by_stage == {"validation": 2, "json": 1, "processing": 1, "publish": 1}
    assert found.by_error_type["ValidationError"] == 2
    assert len(found.latest) == 2
    assert {letter.key for letter in found.latest} <= {b"k-val-2", b"k-proc", b"k-dropped"}
    newest = found.latest[0]
    assert newest.timestamp_ms >= found.latest[1].timestamp_ms
    assert newest.reason["error.message"].endswith(newest.key.decode())
    assert newest.source == f"{settings.inbound_topic}/{newest.partition}/0"


@pytest.mark.parametrize(("select", "expected"), [
    (lambda: Selection(stage="validation"), [b"k-val-1", b"k-val-2"]),
    (lambda: Selection(error_type="RuntimeError"), [b"k-proc"]),
    # Built when the test runs: the letters' ages count from when they are written.
    (lambda: Selection(since_ms=int(time.time() * 1000) - HOUR_MS), [b"k-val-2", b"k-proc"]),
], ids=["stage", "error-type", "since"])
async def test_replay_republishes_exactly_the_matching_records(settings_for, select, expected):
    """Each selected dead letter goes back to the inbound topic with its original key, bytes
    and headers, without reason headers, marked with where it was replayed from."""
    settings = await _with_letters(settings_for)
    report = await replay(settings, select())
    assert report.ok and [letter.key for letter, _ in report.replayed] == expected
    replayed = await read_to_end(settings, settings.inbound_topic)
    originals = {letter.key: letter for letter in LETTERS}
    assert sorted(record.key for record in replayed) == sorted(expected)
    for record in replayed:
        assert record.value == originals[record.key].value
        # Back on the partition it was read from (k-val-2 and k-proc hash elsewhere).
        assert record.partition == originals[record.key].partition
        names = [name for name, _ in record.headers]
        assert not any(name.startswith("chatstream.dlq.") for name in names)
        assert record.headers[0] == TRACEPARENT
        source = dict(record.headers)[REPLAYED_FROM_HEADER].decode()
        assert source.startswith(f"{settings.dlq_topic}/{originals[record.key].partition}/")


async def test_replay_waits_for_every_ack_whatever_the_members_acks(settings_for):
    """With CHATSTREAM_PRODUCER_ACKS=0 for the members, replay still waits for acks=all: the
    records are acknowledged and marked, so a second run replays nothing."""
    settings = await _with_letters(lambda **kw: settings_for(producer_acks="0", **kw))
    first = await replay(settings, Selection(stage="validation"))
    second = await replay(settings, Selection(stage="validation"))
    assert first.ok and len(first.replayed) == 2
    assert second.replayed == [] and len(second.skipped) == 2
    assert len(await read_to_end(settings, settings.inbound_topic)) == 2


async def test_a_second_replay_replays_nothing_unless_forced(settings_for):
    """Markers make a replay idempotent; --force replays the same dead letters again."""
    settings = await _with_letters(settings_for)
    selection = Selection(stage="validation")
    first = await replay(settings, selection)
    second = await replay(settings, selection)
    forced = await replay(settings, selection, force=True)
    assert len(first.replayed) == 2
    assert second.replayed == [] and [why for _, why in second.skipped] == [
        "already replayed (--force replays it again)"] * 2
    assert len(forced.replayed) == 2
    inbound = await read_to_end(settings, settings.inbound_topic)
    assert len(inbound) == 4
    dlq = await read_to_end(settings, settings.dlq_topic)
    assert len(dlq) == len(LETTERS) + 4  # the letters and one marker per replayed record
    markers = [r for r in dlq if is_replay_marker(r.headers)]
    assert len(markers) == 4
    assert all(dict(r.headers)[REPLAY_MARKER_HEADER].startswith(b"1/") and r.partition == 1
               for r in markers)
    assert (await inspect(settings)).total == len(LETTERS)  # markers are not dead letters


async def test_dry_run_publishes_nothing(settings_for):
    """A dry run lists what it would replay, writes neither records nor markers."""
    settings = await _with_letters(settings_for)
    dry = await replay(settings, Selection(), dry_run=True)
    assert dry.dry_run and [destination for _, destination in dry.replayed] == [None] * 4
    assert await read_to_end(settings, settings.inbound_topic) == []
    real = await replay(settings, Selection())
    assert len(real.replayed) == 4  # the dry run marked nothing


async def test_a_dead_letter_without_its_bytes_is_skipped_and_said_so(settings_for):
    """A value-dropped dead letter is never replayed, even forced; the report says why."""
    settings = await _with_letters(settings_for)
    report = await replay(settings, Selection(stage="publish"), force=True)
    assert report.replayed == []
    [(letter, why)] = report.skipped
    assert letter.key == b"k-dropped"
    assert why.startswith("cannot be replayed: its bytes were not kept")
    assert await read_to_end(settings, settings.inbound_topic) == []

