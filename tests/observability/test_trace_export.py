"""Traces leave the process over OTLP/gRPC when OTEL_EXPORTER_OTLP_PROTOCOL=grpc."""

from __future__ import annotations

import asyncio

import pytest
from kafka_helpers import running_chatstream
from otlp_grpc_receiver import GrpcOtlpReceiver

from infra.telemetry import configure_tracing
from stream.botkit.client import BotClient, TopicWatcher
from stream.devtools.bots import event_for
from stream.observability.tracing import SpanName

pytestmark = pytest.mark.kafka


async def test_one_event_trace_arrives_over_grpc(settings_for, fresh_tracer_provider):
    """One event's bot, process, queue-wait, processor and response spans reach a gRPC receiver."""
    settings = settings_for()
    with GrpcOtlpReceiver() as receiver:
        provider = configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                      "OTEL_SERVICE_NAME": "chatstream-grpc-test"})
        assert provider is not None
        event = event_for("b", "c", "u", "hello there")
        async with running_chatstream(settings), TopicWatcher(settings) as watcher:
            async with BotClient(settings) as client:
                await (await client.publish(event))
            await watcher.wait_for(event["event_id"], 30)
        await asyncio.to_thread(provider.force_flush)
        provider.shutdown()
        spans = receiver.spans

    bot = next(s for s in spans if s.name == SpanName.BOT_PUBLISH)
    in_trace = {s.span_id: s for s in spans if s.trace_id == bot.trace_id}
    process = [s for s in in_trace.values() if s.name == SpanName.PROCESS]
    assert len(process) == 1 and process[0].parent_span_id == bot.span_id
    assert process[0].service == "chatstream-grpc-test"
    children = {s.name for s in in_trace.values() if s.parent_span_id == process[0].span_id}
    assert {SpanName.QUEUE_WAIT, SpanName.RESPONSE_PUBLISH, "chat.processor reply"} <= children
