"""The latency histograms: the same exposition as prometheus_client's ``Histogram``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from stream.observability.metrics import _LATENCY_BUCKETS, BucketCounts

_VALUES = st.one_of(st.sampled_from(_LATENCY_BUCKETS),  # on a bound: counted in its bucket
                    st.floats(0, 100, allow_nan=False))


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(sample.name, sample.labels.get("le", "")): sample.value
            for metric in registry.collect() for sample in metric.samples
            if not sample.name.endswith("_created")}


@given(st.lists(_VALUES, max_size=60))
def test_bucket_counts_expose_what_a_prometheus_histogram_exposes(values):
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counts = BucketCounts("latency_seconds", "doc")
    ours.register(counts)
    reference = Histogram("latency_seconds", "doc", registry=theirs, buckets=_LATENCY_BUCKETS)
    for value in values:
        counts.observe(value)
        reference.observe(value)
    assert _samples(ours) == _samples(theirs)
