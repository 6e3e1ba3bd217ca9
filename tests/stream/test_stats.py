from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Priority
from stream.observability.stats import LatencyWindow, PriorityQueueStats, RateMeter

# --- LatencyWindow ----------------------------------------------------------------------------


def test_empty_window_reports_zero() -> None:
    """An empty window has count 0, mean 0.0 and percentiles 0.0."""
    window = LatencyWindow(10)
    assert window.count == 0
    assert window.mean == 0.0
    assert window.percentile(99) == 0.0


def test_window_keeps_only_the_last_samples() -> None:
    """Once full, the oldest samples are dropped."""
    window = LatencyWindow(3)
    for ms in (100.0, 1.0, 2.0, 3.0):
        window.add(ms)
    assert window.count == 3
    assert window.mean == 2.0
    assert window.percentile(100) == 3.0


def test_percentiles_interpolate_linearly() -> None:
    """Percentiles use linear interpolation between closest ranks."""
    window = LatencyWindow(100)
    for ms in range(1, 11):
        window.add(float(ms))
    assert window.percentile(0) == 1.0
    assert window.percentile(50) == 5.5
    assert window.percentile(100) == 10.0
    assert window.percentile(90) == pytest.approx(9.1)


def test_percentile_out_of_range_raises() -> None:
    """Percentiles outside 0..100 raise ValueError; a zero-size window is rejected."""
    window = LatencyWindow(5)
    with pytest.raises(ValueError):
        window.percentile(101)
    with pytest.raises(ValueError):
        window.percentile(-1)
    with pytest.raises(ValueError):
        LatencyWindow(0)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200), st.integers(1, 50))
def test_window_matches_reference(samples: list[float], size: int) -> None:
    """Mean and median equal the statistics module's over the last `size` samples."""
    window = LatencyWindow(size)
    for ms in samples:
        window.add(ms)
    kept = samples[-size:]
    assert window.count == len(kept)
    assert window.mean == pytest.approx(statistics.fmean(kept))
    assert window.percentile(50) == pytest.approx(statistics.median(kept))
    assert min(kept) <= window.percentile(95) <= max(kept)


# --- RateMeter --------------------------------------------------------------------------------


def test_rate_counts_events_over_the_window() -> None:
    """rate is the number of events in the last window divided by its length."""
    meter = RateMeter(window_s=10.0)
    for i in range(50):
        meter.add(100.0 + i * 0.1)
    assert meter.rate(105.0) == pytest.approx(5.0)


def test_rate_forgets_events_older_than_the_window() -> None:
    """Events older than the window no longer count."""
    meter = RateMeter(window_s=1.0, buckets=10)
    meter.add(0.0, n=100)
    meter.add(5.0, n=3)
    assert meter.rate(5.5) == pytest.approx(3.0)
    assert meter.rate(100.0) == 0.0


def test_rate_of_an_empty_meter_is_zero() -> None:
    """A meter with no events reports 0.0."""
    assert RateMeter(window_s=5.0).rate(123.0) == 0.0


def test_rate_meter_validates_arguments() -> None:
    """Non-positive windows and bucket counts are rejected."""
    with pytest.raises(ValueError):
        RateMeter(window_s=0)
    with pytest.raises(ValueError):
        RateMeter(window_s=1.0, buckets=0)


def test_rate_meter_memory_is_bounded() -> None:
    """However many events arrive, the meter keeps at most buckets + 1 buckets."""
    meter = RateMeter(window_s=1.0, buckets=10)
    for i in range(10_000):
        meter.add(i * 0.001)
    assert len(meter._buckets) <= 11


@given(
    times=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=100),
    now=st.floats(0, 120, allow_nan=False),
)
def test_rate_is_within_one_bucket_of_exact(times: list[float], now: float) -> None:
    """The bucketed rate lies between the exact counts over the window shrunk and grown by
    one bucket."""
    window, buckets = 10.0, 20
    width = window / buckets
    meter = RateMeter(window_s=window, buckets=buckets)
    times.sort()
    times = [t for t in times if t <= now]
    for t in times:
        meter.add(t)
    low = sum(1 for t in times if t > now - window + width) / window
    high = sum(1 for t in times if t > now - window - width) / window
    assert low - 1e-9 <= meter.rate(now) <= high + 1e-9


# --- PriorityQueueStats -----------------------------------------------------------------------


def test_queue_stats_snapshot_shape() -> None:
    """snapshot lists every priority, most urgent first, with depth, processed, avg wait."""
    stats = PriorityQueueStats()
    stats.record(Priority.CRITICAL, 10.0)
    stats.record(Priority.CRITICAL, 30.0)
    stats.record(Priority.LOW, 5.0)
    snap = stats.snapshot({Priority.CRITICAL: 2, Priority.NORMAL: 7})
    assert list(snap) == ["critical", "high", "normal", "low"]
    assert snap["critical"] == {"depth": 2, "processed": 2, "avg_wait_ms": 20.0}
    assert snap["high"] == {"depth": 0, "processed": 0, "avg_wait_ms": 0.0}
    assert snap["normal"] == {"depth": 7, "processed": 0, "avg_wait_ms": 0.0}
    assert snap["low"] == {"depth": 0, "processed": 1, "avg_wait_ms": 5.0}


def test_a_percentile_that_falls_on_a_value_is_that_value_even_beside_an_endless_one() -> None:
    """An endless wait (an unanswered event) next to the percentile's position must not turn
    it into NaN when the position falls exactly on a finite value."""
    import math

    from stream.observability.stats import percentile

    waits = [float(i) for i in range(100)] + [math.inf]
    assert percentile(waits, 99) == 99.0
