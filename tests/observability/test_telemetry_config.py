"""The OTEL_* variables, read as the OpenTelemetry specification defines them."""

from __future__ import annotations

import subprocess
import sys

from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from infra.telemetry import build_span_processor, configure_tracing


def test_a_service_name_in_the_resource_attributes_is_kept(fresh_tracer_provider):
    """service.name from OTEL_RESOURCE_ATTRIBUTES names the service (OTEL_SERVICE_NAME, when
    set, wins); the other attributes come along."""
    given = {"OTEL_TRACES_EXPORTER": "console",
             "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=prod"}
    provider = configure_tracing(given)
    assert provider is not None
    attributes = dict(provider.resource.attributes)
    provider.shutdown()
    assert attributes["service.name"] == "from-attrs"
    assert attributes["deployment.environment"] == "prod"
    provider = configure_tracing({**given, "OTEL_SERVICE_NAME": "named"})
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "named"
    provider.shutdown()


def test_exporters_are_a_comma_separated_list():
    both = build_span_processor({"OTEL_TRACES_EXPORTER": "otlp, console",
                                 "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert isinstance(both, SynchronousMultiSpanProcessor)
    assert len(both._span_processors) == 2
    assert isinstance(build_span_processor({"OTEL_TRACES_EXPORTER": "console"}),
                      BatchSpanProcessor)
    assert build_span_processor({"OTEL_TRACES_EXPORTER": "none"}) is None


def test_an_exporter_chatstream_cannot_use_exits_2_with_one_line():
    """A member given OTEL_TRACES_EXPORTER=jaeger stops at start with the reason, as for any
    bad setting (under a supervisor a traceback would restart it again and again)."""
    result = subprocess.run(
        [sys.executable, "-c", "from stream.app.cli import main; main()", "run"],
        env={"OTEL_TRACES_EXPORTER": "jaeger", "CHATSTREAM_WORKERS": "1",
             "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "OTEL_TRACES_EXPORTER" in line]
    assert lines and "jaeger is not one of otlp, console, none" in lines[0]
    assert "Traceback" not in result.stderr
