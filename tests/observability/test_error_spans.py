"""Failures are visible in traces: dead letters, failing processors, unanswered events."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import TopicPartition
from kafka_helpers import collect, running_chatstream
from opentelemetry.trace import StatusCode

from processors.base import ExecutionKind, Stage, TransientProcessorError
from schemas.events import ChatEvent
from stream.app.wiring import build_engine
from stream.devtools.bots import event_for
from stream.kafka.config import producer_config
from stream.kafka.records import RecordSource
from stream.observability.tracing import (
    SpanName,
    bot_publish_span,
    publish_span,
    start_process_span,
    tracer,
)
from stream.settings import load_settings

IN = TopicPartition("in", 0)


class Flaky:
    """Fails with a transient error every time: retried, then degraded."""

    name, kind, stage, timeout_s = "flaky", ExecutionKind.ASYNC, Stage.ANALYSIS, 2.0

    async def process(self, context):
        raise TransientProcessorError("upstream answered 503")


class Gate:
    """Waits until the test opens the gate (keeps an event in flight)."""

    name, kind, stage, timeout_s = "gate", ExecutionKind.ASYNC, Stage.ANALYSIS, 30.0

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def process(self, context):
        await self.open.wait()
        return {}


def submit(engine, event, **kwargs) -> asyncio.Future:
    """Submit ``event``; the returned future resolves as the engine's sink hears of it."""
    waiter = asyncio.get_running_loop().create_future()
    engine.submit(event, waiter=waiter, **kwargs)
    return waiter


def offline_settings(**overrides):
    return load_settings(kafka_bootstrap_servers="127.0.0.1:1", max_worker_processes=1,
                         max_worker_threads=2, **overrides)


def traced_event(offset: int, user: str = "u") -> tuple[ChatEvent, RecordSource, object]:
    event = ChatEvent.model_validate(event_for("b", "c", user, f"message {offset}"))
    source = RecordSource(tp=IN, offset=offset, key=b"c")
    return event, source, start_process_span(source, "group", event)


def ended_twice(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "on an ended span" in r.getMessage()]


@pytest.mark.kafka
async def test_dead_letter_keeps_bot_trace_and_process_span_is_error(settings_for, memory_spans):
    """A DLQ'd record carries the bot's traceparent; its process span is an error child of it."""
    settings = settings_for(partitions=1)
    async with running_chatstream(settings):
        with bot_publish_span(settings.inbound_topic, {"event_id": "broken"}) as headers:
            producer = AIOKafkaProducer(**producer_config(settings))
            await producer.start()
            try:
                await producer.send_and_wait(settings.inbound_topic, b'{"event_id": ',
                                             key=b"c", headers=headers)
            finally:
                await producer.stop()
        watcher = await collect(settings, expected_responses=0, expected_dead_letters=1)
    spans = memory_spans.get_finished_spans()

    sent_traceparent = dict(headers)["traceparent"]
    assert dict(watcher.dead_letters[0].headers)["traceparent"] == sent_traceparent
    bot = next(s for s in spans if s.name == SpanName.BOT_PUBLISH)
    process = [s for s in spans if s.name == SpanName.PROCESS]
    assert len(process) == 1
    assert process[0].context.trace_id == bot.context.trace_id
    assert process[0].parent.span_id == bot.context.span_id
    assert process[0].status.status_code is StatusCode.ERROR
    assert process[0].attributes["error.type"] == "InvalidJSON"
    dlq = next(s for s in spans if s.name == SpanName.DEAD_LETTER)
    assert dlq.parent.span_id == process[0].context.span_id


async def test_failing_processor_span_is_error_with_retry_events(memory_spans, caplog):
    """A processor failing every attempt: error span under the process span, one event per try."""
    engine = build_engine(offline_settings(processor_retries=2), processors=[Flaky()])
    await engine.start()
    event, source, span = traced_event(0)
    response = await submit(engine, event, source=source, trace=span)
    await engine.stop(timeout_s=0.5)
    spans = {s.name: s for s in memory_spans.get_finished_spans()}

    assert response.degraded == ["flaky"]
    flaky = spans["chat.processor flaky"]
    assert flaky.parent.span_id == spans[SpanName.PROCESS].context.span_id
    assert flaky.status.status_code is StatusCode.ERROR
    assert flaky.attributes["chat.processor.attempts"] == 3
    assert [e.name for e in flaky.events] == ["retry", "retry", "exception"]
    assert [e.attributes["chat.processor.attempt"] for e in flaky.events] == [1, 2, 3]
    assert flaky.events[0].attributes["exception.type"] == "TransientProcessorError"
    assert not ended_twice(caplog)


@pytest.mark.parametrize("drop", ["shutdown", "revocation"])
async def test_unanswered_events_end_their_process_span_as_error(memory_spans, caplog, drop):
    """In-flight and queued events dropped by stop or revocation: each process span ends once."""
    caplog.set_level(logging.WARNING)
    gate = Gate()
    engine = build_engine(offline_settings(), processors=[gate])
    await engine.start()
    items = [traced_event(offset) for offset in (0, 1)]  # same session: 1 queues behind 0
    futures = [submit(engine, event, source=source, trace=span) for event, source, span in items]
    await asyncio.sleep(0.05)
    if drop == "revocation":
        assert len(engine.release_partitions({IN})) == 1
        gate.open.set()
    await engine.stop(timeout_s=0.3)
    await asyncio.gather(*futures, return_exceptions=True)
    await asyncio.sleep(0)
    process = sorted((s for s in memory_spans.get_finished_spans() if s.name == SpanName.PROCESS),
                     key=lambda s: s.attributes["messaging.kafka.offset"])

    assert len(process) == 2
    queued = process[1]
    assert queued.status.status_code is StatusCode.ERROR
    assert queued.attributes["error.type"] == "EngineStopped"
    if drop == "shutdown":
        assert process[0].status.status_code is StatusCode.ERROR
        assert process[0].attributes["error.type"] == "CancelledError"
    else:
        assert process[0].status.status_code is StatusCode.UNSET
    assert not ended_twice(caplog)


def test_failed_publish_marks_the_process_span_as_error(memory_spans):
    """A response publish that raises makes both its span and the process span errors."""
    parent = tracer().start_span(SpanName.PROCESS)
    with pytest.raises(KafkaTimeoutError), publish_span(parent, "out", "c"):
        raise KafkaTimeoutError()
    parent.end()
    spans = {s.name: s for s in memory_spans.get_finished_spans()}

    assert spans[SpanName.RESPONSE_PUBLISH].status.status_code is StatusCode.ERROR
    assert spans[SpanName.PROCESS].status.status_code is StatusCode.ERROR
    assert spans[SpanName.PROCESS].attributes["error.type"] == "KafkaTimeoutError"
