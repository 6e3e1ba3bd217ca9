"""One chat event yields one connected trace, exported over OTLP/HTTP to a local receiver."""

from __future__ import annotations

import asyncio

import pytest
from kafka_helpers import running_chatstream
from opentelemetry import trace
from otlp_receiver import OtlpReceiver

from infra.telemetry import configure_tracing
from stream.botkit.client import BotClient, TopicWatcher
from stream.devtools.bots import event_for
from stream.observability.tracing import SpanName

pytestmark = pytest.mark.kafka

SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER = 4, 5


async def test_one_event_one_connected_trace(settings_for, fresh_tracer_provider):
    """Bot producer -> chatstream process -> each processor, queue wait -> response publish."""
    settings = settings_for()
    async with OtlpReceiver() as receiver:
        provider = configure_tracing({"OTEL_TRACES_EXPORTER": "otlp",
                                      "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                                      "OTEL_SERVICE_NAME": "chatstream-test"})
        assert provider is not None
        event = event_for("b", "c", "u", "I am really upset, my order never arrived!")
        async with running_chatstream(settings), TopicWatcher(settings) as watcher:
            async with BotClient(settings) as client:
                await (await client.publish(event))
            await watcher.wait_for(event["event_id"], 30)
            record = watcher.response_records[0]
        # The exporter blocks; off the loop, so that the receiver on this loop can answer it.
        await asyncio.to_thread(provider.force_flush)
        provider.shutdown()
        spans = receiver.spans

    bot = [s for s in spans if s.name == SpanName.BOT_PUBLISH]
    assert len(bot) == 1 and bot[0].kind == SPAN_KIND_PRODUCER
    trace_id = bot[0].trace_id
    in_trace = [s for s in spans if s.trace_id == trace_id]
    process = [s for s in in_trace if s.name == SpanName.PROCESS]
    assert len(process) == 1, [s.name for s in in_trace]
    process_span = process[0]
    assert process_span.kind == SPAN_KIND_CONSUMER
    assert process_span.parent_span_id == bot[0].span_id
    assert process_span.attributes["messaging.system"] == "kafka"
    assert process_span.attributes["chat.event_id"] == event["event_id"]
    assert process_span.attributes["messaging.destination.name"] == settings.inbound_topic
    assert process_span.attributes["chat.priority"] in {"critical", "high", "normal", "low"}

    children = {s.name for s in in_trace if s.parent_span_id == process_span.span_id}
    processor_spans = {name for name in children if name.startswith("chat.processor ")}
    assert {"chat.processor emotion", "chat.processor memory", "chat.processor thread",
            "chat.processor reply"} <= processor_spans
    assert SpanName.QUEUE_WAIT in children
    assert SpanName.RESPONSE_PUBLISH in children

    traceparent = dict(record.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id
    publish = next(s for s in in_trace if s.name == SpanName.RESPONSE_PUBLISH)
    assert traceparent.split("-")[2] == publish.span_id
    assert trace.get_tracer_provider() is not None
