"""OpenTelemetry set-up from the standard OTEL_* environment variables.

Nothing is installed unless a traces exporter is asked for (OTEL_TRACES_EXPORTER=otlp|console,
or an OTLP endpoint is set), so tracing costs only the API's no-op calls by default.
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER(_ARG) are read by the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

DEFAULT_SERVICE_NAME = "chatstream"


class TelemetryConfigError(ValueError):
    """An OTEL_* variable has a value chatstream cannot use."""


def _wanted_exporter(env: Mapping[str, str]) -> str | None:
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter in ("", "none"):
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return "otlp" if exporter == "" and endpoint else None
    if exporter not in ("otlp", "console"):
        raise TelemetryConfigError(
            f"invalid OTEL_TRACES_EXPORTER={exporter!r}: expected otlp, console or none")
    return exporter


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    # Endpoints are passed explicitly so that a given mapping (not only os.environ) is honoured.
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=traces_endpoint or base)
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        if traces_endpoint is None and base is not None:
            traces_endpoint = base.rstrip("/") + "/v1/traces"
        return HttpSpanExporter(endpoint=traces_endpoint)
    raise TelemetryConfigError(
        f"invalid OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: expected http/protobuf or grpc")


def build_span_processor(env: Mapping[str, str] | None = None) -> SpanProcessor | None:
    """The span processor the environment asks for, or None for no tracing."""
    env = os.environ if env is None else env
    exporter = _wanted_exporter(env)
    if exporter is None:
        return None
    span_exporter = ConsoleSpanExporter() if exporter == "console" else _otlp_exporter(env)
    return BatchSpanProcessor(span_exporter, schedule_delay_millis=500)


def configure_tracing(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install a tracer provider when the environment asks for export; return it (or None)."""
    env = os.environ if env is None else env
    processor = build_span_processor(env)
    if processor is None:
        return None
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME", DEFAULT_SERVICE_NAME)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider
