"""Observability: tracing of one event end to end, counters, stats, Prometheus metrics and the
HTTP endpoints (``/metrics``, ``/stats``, ``/healthz``, ``/readyz``)."""
