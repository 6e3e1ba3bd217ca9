"""OpenTelemetry set-up from the standard OTEL_* environment variables.

Nothing is installed unless a traces exporter is asked for (OTEL_TRACES_EXPORTER=otlp, console or
both, comma-separated, or an OTLP endpoint is set), so tracing costs only the API's no-op calls by
default. OTEL_SERVICE_NAME (else service.name in OTEL_RESOURCE_ATTRIBUTES, else "chatstream")
names the service; OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER(_ARG) are read as the SDK
reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

DEFAULT_SERVICE_NAME = "chatstream"


class TelemetryConfigError(ValueError):
    """An OTEL_* variable has a value chatstream cannot use."""


def _wanted_exporters(env: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER lists (comma-separated, as the specification has
    it); none when it says none, and otlp when it is unset but an OTLP endpoint is set."""
    given = env.get("OTEL_TRACES_EXPORTER", "")
    wanted = [name.strip().lower() for name in given.split(",") if name.strip()]
    if not wanted:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return ["otlp"] if endpoint else []
    unknown = [name for name in wanted if name not in ("otlp", "console", "none")]
    if unknown:
        raise TelemetryConfigError(
            f"invalid OTEL_TRACES_EXPORTER={given.strip()!r}: {', '.join(unknown)} is not one "
            f"of otlp, console, none (comma-separated)")
    return list(dict.fromkeys(name for name in wanted if name != "none"))


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
    processors = [BatchSpanProcessor(ConsoleSpanExporter() if name == "console"
                                     else _otlp_exporter(env), schedule_delay_millis=500)
                  for name in _wanted_exporters(env)]
    if not processors:
        return None
    if len(processors) == 1:
        return processors[0]
    both = SynchronousMultiSpanProcessor()
    for processor in processors:
        both.add_span_processor(processor)
    return both


def configure_tracing(env: Mapping[str, str] | None = None,
                      default_service_name: str = DEFAULT_SERVICE_NAME) -> TracerProvider | None:
    """Install a tracer provider when the environment asks for export; return it (or None).
    Its ``service.name`` is ``default_service_name`` unless the environment names one."""
    env = os.environ if env is None else env
    processor = build_span_processor(env)
    if processor is None:
        return None
    # Read from ``env`` (not only os.environ); OTEL_SERVICE_NAME wins over a service.name in
    # OTEL_RESOURCE_ATTRIBUTES, as the specification says, and chatstream is the fallback.
    attributes = _resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    attributes["service.name"] = (env.get("OTEL_SERVICE_NAME") or attributes.get("service.name")
                                  or default_service_name)
    resource = Resource.create(attributes)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def _resource_attributes(text: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: ``key=value`` pairs, comma-separated, values percent-encoded."""
    attributes = {}
    for entry in text.split(","):
        key, sep, value = entry.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    return attributes
