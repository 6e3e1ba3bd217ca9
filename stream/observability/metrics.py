"""Prometheus metrics. Counters and gauges are read from the runner at scrape time, so the
per-event path only pays for the two latency histograms."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from stream.kafka.member import StreamRunner

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class LatencyMetrics:
    """End-to-end (record timestamp -> response acknowledged) and processing latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.end_to_end = BucketCounts(
            "chatstream_end_to_end_latency_seconds",
            "From the inbound record's timestamp to the response's acknowledgement")
        self.processing = BucketCounts(
            "chatstream_processing_latency_seconds", "Time in the processor pipeline")
        registry.register(self.end_to_end)
        registry.register(self.processing)

    def observe(self, end_to_end_s: float | None, processing_s: float) -> None:
        """One answered event (the sink's ``LatencyObserver``); a record without a usable
        producer timestamp counts for processing only."""
        if end_to_end_s is not None and end_to_end_s >= 0:
            self.end_to_end.observe(end_to_end_s)
        self.processing.observe(processing_s)


class BucketCounts(Collector):
    """A histogram counted per bucket as it is observed and made cumulative when scraped, in
    prometheus_client's exposition (``_bucket`` with ``le``, ``_sum``, ``_count``).

    Every answered event observes two: ``prometheus_client.Histogram.observe`` takes a lock
    and walks the buckets in Python (1.3 us for the pair), this is a bisect and an increment
    (0.3 us). Not thread-safe: observed and scraped on the event loop's thread."""

    def __init__(self, name: str, documentation: str,
                 buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        cumulative, total = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append((floatToGoString(bound), total))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative,
                                    sum_value=self.sum)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class RunnerCollector(Collector):
    """Reads counters, queue depths, sessions, cache and lag from a runner when scraped."""

    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner

    def collect(self) -> Iterator[Metric]:
        runner = self._runner
        counters = runner.counters
        for name, doc, value in (
            ("consumed", "Inbound records consumed", counters.consumed),
            ("answered", "Responses acknowledged by the broker", counters.answered),
            ("dead_lettered", "Records sent to the dead-letter topic", counters.dead_lettered),
            ("degraded", "Responses with at least one failed processor", counters.degraded),
            ("commits", "Offset commits", counters.commits),
        ):
            yield CounterMetricFamily(f"chatstream_events_{name}", doc, value=value)
        yield CounterMetricFamily(
            "chatstream_sessions_restored", "Sessions restored from the changelog on assignments",
            value=counters.sessions_restored)
        yield CounterMetricFamily(
            "chatstream_session_states_refused",
            "Answers whose session state record the broker refused for good (the answers "
            "stood; the sessions' restored history misses them)", value=counters.states_refused)
        yield CounterMetricFamily(
            "chatstream_session_restore_seconds",
            "Time spent restoring sessions from the changelog (a rising rate means long "
            "hand-overs: compact the changelog or lower SESSION_TIMEOUT_MINUTES)",
            value=counters.restore_seconds)
        yield _gauge("chatstream_ready", "1 when joined and assigned", float(runner.ready.is_set()))
        yield _gauge("chatstream_assigned_partitions", "Partitions owned",
                     len(runner.assignment))
        yield from self._lag(runner)
        if runner.engine is not None:
            yield from _engine_metrics(engine_stats(runner.engine))

    @staticmethod
    def _lag(runner: StreamRunner) -> Iterator[Metric]:
        offsets = GaugeMetricFamily("chatstream_consumer_lag_offsets",
                                    "Records behind the partition's high watermark",
                                    labels=["topic", "partition"])
        seconds = GaugeMetricFamily("chatstream_consumer_lag_seconds",
                                    "Age of the oldest unanswered record",
                                    labels=["topic", "partition"])
        now_ms = time.time() * 1000
        for tp, lag in runner.lag().items():
            labels = [tp.topic, str(tp.partition)]
            offsets.add_metric(labels, lag.offsets)
            seconds.add_metric(labels, max(0.0, (now_ms - lag.oldest_timestamp_ms) / 1000)
                               if lag.oldest_timestamp_ms else 0.0)
        yield offsets
        yield seconds


def _engine_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    performance = stats.get("performance", {})
    yield _gauge("chatstream_in_flight_events", "Events being processed",
                 performance.get("in_flight", 0))
    yield _gauge("chatstream_buffered_events", "Events admitted and not yet answered",
                 performance.get("buffered", 0))
    sessions = stats.get("sessions")
    if sessions:
        yield _gauge("chatstream_active_sessions", "Sessions in memory",
                     sessions["active_sessions"])
        yield _gauge("chatstream_session_utilization", "Active / max sessions",
                     sessions["utilization"])
    queues = stats.get("queues")
    if queues:
        depth = GaugeMetricFamily("chatstream_queue_depth", "Queued events by priority",
                                  labels=["priority"])
        wait = GaugeMetricFamily("chatstream_queue_wait_ms_avg",
                                 "Mean queue wait by priority", labels=["priority"])
        for priority, queue in queues.items():
            depth.add_metric([priority], queue["depth"])
            wait.add_metric([priority], queue["avg_wait_ms"])
        yield depth
        yield wait
    cache = stats.get("cache")
    if cache:
        yield _gauge("chatstream_cache_hit_ratio", "Context cache hit ratio",
                     cache.get("hit_ratio", 0.0))
        yield _gauge("chatstream_cache_entries", "Context cache entries", cache.get("size", 0))
    yield from _pool_metrics(stats.get("pools") or {})
    yield from _processor_metrics(stats.get("processors") or {})


def _pool_metrics(pools: dict[str, dict[str, float]]) -> Iterator[Metric]:
    families = {
        key: GaugeMetricFamily(f"chatstream_pool_{key}", doc, labels=["pool"])
        for key, doc in (
            ("workers", "Size of the processor pool (MAX_WORKER_THREADS / MAX_WORKER_PROCESSES)"),
            ("busy", "Workers running a processor call now"),
            ("queued", "Processor calls waiting for a free worker"),
            ("utilization", "Busy / workers; near 1 with calls queued: raise the pool size"),
        )
    }
    for pool, values in pools.items():
        for key, family in families.items():
            family.add_metric([pool], values.get(key, 0))
    yield from families.values()


def _processor_metrics(processors: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    outcomes = CounterMetricFamily("chatstream_processor_outcomes",
                                   "Processor calls by outcome", labels=["processor", "outcome"])
    retries = CounterMetricFamily("chatstream_processor_retries", "Extra attempts of a processor",
                                  labels=["processor"])
    circuit = GaugeMetricFamily("chatstream_processor_circuit_open",
                                "1 while the processor's circuit breaker is open",
                                labels=["processor"])
    for name, step in processors.items():
        for outcome, key in (("ok", "ok"), ("failed", "failures"), ("timeout", "timeouts"),
                             ("skipped", "skipped")):
            outcomes.add_metric([name, outcome], step.get(key, 0))
        retries.add_metric([name], step.get("retries", 0))
        circuit.add_metric([name], float(step.get("breaker") == "open"))
    yield from (outcomes, retries, circuit)


def engine_stats(engine: Any) -> dict[str, Any]:
    """The engine's performance stats with honest pool figures.

    The pipeline's own ``stats()`` (which the engine reports as "pools") holds per-processor
    counts, not pools: it is moved to "processors", and "pools" gets the thread and process
    pools' usage from ``pool_usage``.
    """
    stats: dict[str, Any] = dict(engine.get_performance_stats())
    stats["processors"] = stats.pop("pools", {})
    stats["pools"] = pool_usage(engine)
    return stats


def pool_usage(engine: Any) -> dict[str, dict[str, float]]:
    """Workers, busy, queued and utilization of the engine's thread and process pools, as the
    pipeline counts them (``Engine.pool_usage``)."""
    return dict(engine.pool_usage())
