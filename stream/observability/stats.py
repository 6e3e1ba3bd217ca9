"""Pure measurement helpers behind the stats endpoint: latency percentiles, rates, queue waits.

No clock is read here: callers pass ``now`` (monotonic seconds). Hand-written rather than a
metrics library because the stats endpoint needs the values themselves, not an exporter.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from schemas.events import Priority

if TYPE_CHECKING:
    from schemas.events import ResponseEvent
    from stream.observability.counters import EventCounters

__all__ = ["LatencyWindow", "PriorityQueueStats", "RateMeter", "ServedStats", "percentile"]


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values`` by linear interpolation; 0.0 when empty.

    Raises ValueError for ``p`` outside 0..100. Sorts a copy: O(n log n), for reporting.
    """
    if not 0 <= p <= 100:
        raise ValueError("percentile must be within 0..100")
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    if position == low:  # on a value: no neighbour to weigh (an endless one would give NaN)
        return ordered[low]
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class LatencyWindow:
    """The last ``size`` latency samples (milliseconds), for mean and percentiles.

    ``add`` is O(1); ``mean`` and ``percentile`` walk or sort the window: call them when
    reporting, not per event.
    """

    __slots__ = ("_samples",)

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        """Record one sample; the oldest is dropped once the window is full."""
        self._samples.append(float(ms))

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0..100) by linear interpolation; 0.0 when empty.

        Raises ValueError for ``p`` outside 0..100.
        """
        return percentile(self._samples, p)

    @property
    def mean(self) -> float:
        """Mean of the window (O(size), for reporting); 0.0 when empty."""
        if not self._samples:
            return 0.0
        return math.fsum(self._samples) / len(self._samples)

    @property
    def count(self) -> int:
        """Samples currently in the window."""
        return len(self._samples)


class RateMeter:
    """Events per second over the last ``window_s`` seconds.

    Counts are kept in ``buckets`` time buckets, so memory is bounded whatever the throughput
    and the window edge is accurate to one bucket (``window_s / buckets`` seconds). The rate is
    the count over the full window, so it ramps up during the first ``window_s`` seconds.
    """

    __slots__ = ("_buckets", "_total", "_width", "_window")

    def __init__(self, window_s: float = 10.0, *, buckets: int = 50) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        self._window = window_s
        self._width = window_s / buckets
        self._buckets: deque[list[int]] = deque()  # [bucket index, count], oldest first
        self._total = 0

    def add(self, now: float, n: int = 1) -> None:
        """Count ``n`` events at ``now``."""
        index = math.floor(now / self._width)
        buckets = self._buckets
        self._total += n
        if buckets and buckets[-1][0] >= index:
            # Same bucket (or a slightly stale ``now``): what has expired since the last new
            # bucket is left for that one, or for ``rate``, to drop.
            buckets[-1][1] += n
            return
        buckets.append([index, n])
        self._expire(now)

    def rate(self, now: float) -> float:
        """Events per second over the window ending at ``now``."""
        self._expire(now)
        return self._total / self._window

    def _expire(self, now: float) -> None:
        oldest_kept = math.floor((now - self._window) / self._width) + 1
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest_kept:
            self._total -= buckets.popleft()[1]


class PriorityQueueStats:
    """Per priority: events processed and their mean queue wait, since start."""

    __slots__ = ("_processed", "_wait_ms")

    def __init__(self) -> None:
        self._processed = dict.fromkeys(Priority, 0)
        self._wait_ms = dict.fromkeys(Priority, 0.0)

    def record(self, priority: Priority, wait_ms: float) -> None:
        """Count one processed event of ``priority`` that waited ``wait_ms`` in the queue."""
        self._processed[priority] += 1
        self._wait_ms[priority] += wait_ms

    def snapshot(self, depths: Mapping[Priority, int]) -> dict[str, dict[str, float | int]]:
        """``{"critical": {"depth", "processed", "avg_wait_ms"}, ...}``, most urgent first.

        ``depths`` are the current queue depths (missing priorities count as 0).
        """
        result: dict[str, dict[str, float | int]] = {}
        for priority in Priority:
            processed = self._processed[priority]
            avg = self._wait_ms[priority] / processed if processed else 0.0
            result[priority.value] = {
                "depth": depths.get(priority, 0),
                "processed": processed,
                "avg_wait_ms": avg,
            }
        return result


class ServedStats:
    """What an engine reports of the events it answered: latency, rate and queue waits.

    Counts of answered and degraded events are not kept here but read from the sink's
    ``EventCounters`` when reporting, so each figure has one source.
    """

    __slots__ = ("_latency", "_queues", "_rate", "_started_at")

    def __init__(self, started_at: float) -> None:
        self._started_at = started_at
        self._latency = LatencyWindow(2048)
        self._rate = RateMeter(window_s=10.0)
        self._queues = PriorityQueueStats()

    def add(self, priority: Priority, admitted_at: float, response: ResponseEvent,
            now: float) -> None:
        """Count one answered event, admitted at ``admitted_at`` and done at ``now``."""
        self._rate.add(now)
        self._latency.add((now - admitted_at) * 1000)
        self._queues.record(priority, response.queued_ms)

    def uptime(self, now: float) -> float:
        return round(now - self._started_at, 3)

    def performance(self, now: float, counters: EventCounters) -> dict[str, Any]:
        return {
            "messages_per_second": round(self._rate.rate(now), 3),
            "avg_response_time_ms": round(self._latency.mean, 3),
            "p50_response_time_ms": round(self._latency.percentile(50), 3),
            "p95_response_time_ms": round(self._latency.percentile(95), 3),
            "p99_response_time_ms": round(self._latency.percentile(99), 3),
            "total_processed": counters.answered,
            "total_degraded": counters.degraded,
        }

    def queues(self, depths: Mapping[Priority, int]) -> dict[str, dict[str, float | int]]:
        return self._queues.snapshot(depths)
