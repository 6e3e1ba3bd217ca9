from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.kafka.offsets import OffsetTracker, PartitionOffsets


def _tracked(*offsets: int) -> PartitionOffsets:
    part = PartitionOffsets()
    for offset in offsets:
        part.track(offset)
    return part


# --- PartitionOffsets -------------------------------------------------------------------------


def test_nothing_tracked_has_nothing_to_commit() -> None:
    """A fresh partition has no committable offset and nothing pending."""
    part = PartitionOffsets()
    assert part.committable() is None
    assert part.pending == 0


def test_committable_is_lowest_pending_offset() -> None:
    """While offsets are pending, the watermark is the lowest of them."""
    part = _tracked(10, 11, 12)
    assert part.committable() == 10
    part.complete(11)
    assert part.committable() == 10
    assert part.pending == 2


def test_completing_the_head_advances_over_completed_offsets() -> None:
    """Completing the lowest pending offset jumps over offsets completed earlier."""
    part = _tracked(10, 11, 12, 13)
    part.complete(12)
    part.complete(11)
    part.complete(10)
    assert part.committable() == 13


def test_all_complete_commits_highest_plus_one() -> None:
    """With nothing pending, the watermark is the highest tracked offset + 1."""
    part = _tracked(5, 6)
    part.complete(6)
    part.complete(5)
    assert part.committable() == 7
    assert part.pending == 0


def test_gaps_in_offsets_are_skipped() -> None:
    """Offsets missing from the stream (compaction, markers) never hold the watermark back."""
    part = _tracked(3, 7, 20)
    part.complete(3)
    assert part.committable() == 7
    part.complete(7)
    part.complete(20)
    assert part.committable() == 21


def test_retracking_a_pending_offset_is_a_noop() -> None:
    """Tracking an offset that is still pending changes nothing."""
    part = _tracked(1, 2, 3)
    part.track(2)
    assert part.pending == 3
    assert part.committable() == 1


def test_completing_an_untracked_offset_is_ignored() -> None:
    """Completing an unknown or already completed offset changes nothing."""
    part = _tracked(1, 2)
    part.complete(99)
    part.complete(1)
    part.complete(1)
    assert part.committable() == 2
    assert part.pending == 1


def test_tracking_a_completed_offset_again_is_a_seek_back() -> None:
    """Re-tracking an offset no longer pending resets the partition to start from it."""
    part = _tracked(1, 2, 3)
    part.complete(1)
    part.complete(2)
    part.track(2)
    assert part.pending == 1
    assert part.committable() == 2


def test_tracking_a_lower_offset_is_a_seek_back() -> None:
    """An offset below the highest tracked one (and not pending) resets state."""
    part = _tracked(10, 11, 12)
    part.track(4)
    assert part.pending == 1
    assert part.committable() == 4
    part.complete(12)  # belonged to the forgotten state
    assert part.committable() == 4


# --- OffsetTracker ----------------------------------------------------------------------------


def test_tracker_reports_only_advanced_partitions() -> None:
    """commit_points names only partitions whose watermark moved past the last commit."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("a", 0)
    tracker.track("b", 0)
    tracker.complete("a", 0)
    assert tracker.commit_points() == {"a": 1, "b": 0}
    tracker.mark_committed({"a": 1, "b": 0})
    assert tracker.commit_points() == {}
    tracker.complete("b", 0)
    assert tracker.commit_points() == {"b": 1}


def test_tracker_never_reports_a_point_below_the_committed_one() -> None:
    """After a seek back, the watermark is not reported until it passes the committed one."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("a", 10)
    tracker.complete("a", 10)
    tracker.mark_committed(tracker.commit_points())
    tracker.track("a", 5)
    assert tracker.commit_points() == {}
    for offset in range(6, 12):
        tracker.track("a", offset)
    for offset in range(5, 12):
        tracker.complete("a", offset)
    assert tracker.commit_points() == {"a": 12}


def test_mark_committed_ignores_lower_offsets() -> None:
    """An out-of-order commit callback with an older offset does not lower the record."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.mark_committed({"a": 8})
    tracker.mark_committed({"a": 3})
    assert tracker.committed("a") == 8


def test_tracker_counts_pending_per_partition_and_total() -> None:
    """pending and total_pending count incomplete offsets; unknown partitions count 0."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(3):
        tracker.track("a", offset)
    tracker.track("b", 7)
    tracker.complete("a", 1)
    assert tracker.pending("a") == 2
    assert tracker.pending("b") == 1
    assert tracker.pending("zzz") == 0
    assert tracker.total_pending() == 3


def test_forget_drops_partition_state() -> None:
    """forget removes a partition's offsets and committed record."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("a", 1)
    tracker.track("b", 1)
    tracker.mark_committed({"a": 1})
    tracker.forget("a")
    tracker.forget("never-seen")
    assert tracker.partitions() == ("b",)
    assert tracker.committed("a") is None
    assert tracker.pending("a") == 0


def test_complete_on_unknown_partition_is_ignored() -> None:
    """Completing on a partition never tracked (e.g. already forgotten) does nothing."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.complete("gone", 4)
    assert tracker.partitions() == ()
    assert tracker.commit_points() == {}


def test_tracker_accepts_topic_partition_keys() -> None:
    """aiokafka's TopicPartition works as the partition key."""
    from aiokafka.structs import TopicPartition

    tracker: OffsetTracker[TopicPartition] = OffsetTracker()
    tp = TopicPartition("chat.inbound", 3)
    tracker.track(tp, 41)
    tracker.complete(TopicPartition("chat.inbound", 3), 41)
    assert tracker.commit_points() == {tp: 42}


# --- properties -------------------------------------------------------------------------------

_offset_sets = st.sets(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60)


@given(data=st.data(), offsets=_offset_sets)
def test_watermark_never_passes_an_incomplete_offset(
    data: st.DataObject, offsets: set[int]
) -> None:
    """For any completion order, committable() <= lowest incomplete offset, never goes back,
    and equals max+1 once everything is complete."""
    ordered = sorted(offsets)
    part = _tracked(*ordered)
    completion = data.draw(st.permutations(ordered))
    incomplete = set(ordered)
    previous = part.committable()
    for offset in completion:
        part.complete(offset)
        incomplete.discard(offset)
        point = part.committable()
        assert point is not None and previous is not None
        assert point >= previous
        if incomplete:
            assert point == min(incomplete)
        previous = point
    assert part.committable() == ordered[-1] + 1
    assert part.pending == 0


@given(data=st.data(), offsets=_offset_sets)
def test_interleaved_track_and_complete_keep_watermark_safe(
    data: st.DataObject, offsets: set[int]
) -> None:
    """Tracking and completing interleaved at random never commits past an incomplete offset."""
    ordered = sorted(offsets)
    part = PartitionOffsets()
    incomplete: list[int] = []
    tracked_up_to = 0
    previous: int | None = None
    while tracked_up_to < len(ordered) or incomplete:
        if incomplete and (tracked_up_to == len(ordered) or data.draw(st.booleans())):
            offset = incomplete.pop(data.draw(st.integers(0, len(incomplete) - 1)))
            part.complete(offset)
        else:
            offset = ordered[tracked_up_to]
            tracked_up_to += 1
            part.track(offset)
            incomplete.append(offset)
        point = part.committable()
        assert point is not None
        if previous is not None:
            assert point >= previous
        if incomplete:
            assert point <= min(incomplete)
            assert point == min(incomplete)
        else:
            assert point == ordered[tracked_up_to - 1] + 1
        assert part.pending == len(incomplete)
        previous = point
