"""Span names, attribute keys and the spans of one event's journey.

Trace context travels in Kafka headers (W3C ``traceparent``). The upstream aiokafka
instrumentation is not used for the consume side: its receive span ends inside ``getmany``,
before the event has even been scheduled, so the process span here is started from the record's
own headers and lives until the response is acknowledged.
With no tracer provider configured every call below is a no-op of the OpenTelemetry API.

A process span ends exactly once, in the engine's sink (``end_process_span``): after the
response (or dead letter) is acknowledged, or, marked as an error, when the event is never
answered (its processing failed or was cancelled, it was dropped on revocation or shutdown).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from schemas.events import ChatEvent, ProcessorOutcome, ProcessorStatus, ResponseEvent
from stream.engine.work import WorkItem

if TYPE_CHECKING:
    from stream.kafka.records import RecordSource

TRACER_NAME = "chatstream"


class SpanName:
    BOT_PUBLISH = "send chat.inbound"
    PROCESS = "process chat.event"
    QUEUE_WAIT = "chat.queue_wait"
    PROCESSOR = "chat.processor {name}"
    RESPONSE_PUBLISH = "send chat.responses"
    DEAD_LETTER = "send chat.dlq"


class Attr:
    MESSAGING_SYSTEM = "messaging.system"
    MESSAGING_OPERATION = "messaging.operation.type"
    DESTINATION = "messaging.destination.name"
    PARTITION = "messaging.destination.partition.id"
    OFFSET = "messaging.kafka.offset"
    MESSAGE_KEY = "messaging.kafka.message.key"
    CONSUMER_GROUP = "messaging.consumer.group.name"
    MESSAGE_ID = "messaging.message.id"
    EVENT_ID = "chat.event_id"
    SESSION_ID = "chat.session_id"
    PRIORITY = "chat.priority"
    BOT_ID = "chat.bot_id"
    QUEUE_WAIT_MS = "chat.queue_wait_ms"
    DEGRADED = "chat.degraded"
    PROCESSOR = "chat.processor"
    PROCESSOR_STATUS = "chat.processor.status"
    ATTEMPTS = "chat.processor.attempts"
    ERROR_TYPE = "error.type"


def tracing_on() -> bool:
    """Whether a tracer provider is installed. Without one every span call is a no-op of the
    API that still costs microseconds, so the member and the wiring ask once, at start, and
    leave spans out of the per-event path altogether when this is False."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def headers_with_context(context: Context | None = None) -> list[tuple[str, bytes]]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: Sequence[tuple[str, bytes | None]]) -> Context:
    # A Kafka header value may be null; it must not stop the consumer.
    carrier = {key: (value or b"").decode(errors="replace") for key, value in headers}
    return propagate.extract(carrier)


@contextmanager
def bot_publish_span(topic: str, event: Mapping[str, Any]) -> Iterator[list[tuple[str, bytes]]]:
    """A PRODUCER span for a bot's publish; yields the headers that carry it."""
    attributes = {
        Attr.MESSAGING_SYSTEM: "kafka",
        Attr.MESSAGING_OPERATION: "send",
        Attr.DESTINATION: topic,
        Attr.MESSAGE_KEY: str(event.get("channel_id", "")),
        Attr.MESSAGE_ID: str(event.get("event_id", "")),
        Attr.EVENT_ID: str(event.get("event_id", "")),
        Attr.BOT_ID: str(event.get("bot_id", "")),
    }
    with tracer().start_as_current_span(SpanName.BOT_PUBLISH, kind=SpanKind.PRODUCER,
                                        attributes=attributes):
        yield headers_with_context()


def start_process_span(source: RecordSource, group: str, event: ChatEvent | None) -> Span:
    """The CONSUMER span of one inbound record, child of the bot's producer span if any.

    It is not made current here: it outlives this call (it is ended after the response ack).
    """
    attributes: dict[str, Any] = {
        Attr.MESSAGING_SYSTEM: "kafka",
        Attr.MESSAGING_OPERATION: "process",
        Attr.DESTINATION: source.tp.topic,
        Attr.PARTITION: str(source.tp.partition),
        Attr.OFFSET: source.offset,
        Attr.CONSUMER_GROUP: group,
    }
    if source.key is not None:
        attributes[Attr.MESSAGE_KEY] = source.key.decode(errors="replace")
    if event is not None:
        attributes.update({
            Attr.MESSAGE_ID: event.event_id, Attr.EVENT_ID: event.event_id,
            Attr.BOT_ID: event.bot_id,
        })
    return tracer().start_span(SpanName.PROCESS, context=context_from_headers(source.headers),
                               kind=SpanKind.CONSUMER, attributes=attributes)


@contextmanager
def publish_span(parent: Span | None, topic: str, key: str | None, name: str | None = None
                 ) -> Iterator[list[tuple[str, bytes]]]:
    """A PRODUCER span for chatstream's own publish; yields headers carrying its context.

    ``name`` defaults to the dead-letter span name for a topic named like one ("dlq" in it),
    else the response span name; callers that know which it is should say so.
    If the publish fails or is cancelled, ``parent`` (the process span) is marked as an error
    too: the event was not answered.
    """
    context = trace.set_span_in_context(parent) if parent is not None else None
    attributes = _send_attributes(topic, key)
    if name is None:
        name = SpanName.DEAD_LETTER if "dlq" in topic.lower() else SpanName.RESPONSE_PUBLISH
    with tracer().start_as_current_span(name, context=context, kind=SpanKind.PRODUCER,
                                        attributes=attributes) as span:
        try:
            yield headers_with_context()
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                mark_error(span, "Cancelled", f"publish to {topic} cancelled")
            if parent is not None and parent.is_recording():
                mark_error(parent, type(exc).__name__, f"publish to {topic} failed: {exc!r}")
            raise


def start_publish_span(parent: Span, topic: str, key: str | None, name: str
                       ) -> tuple[Span, list[tuple[str, bytes]]]:
    """A PRODUCER span for a publish that is acknowledged later (``end_publish_span``), and
    the headers carrying its context."""
    span = tracer().start_span(name, context=trace.set_span_in_context(parent),
                               kind=SpanKind.PRODUCER, attributes=_send_attributes(topic, key))
    return span, headers_with_context(trace.set_span_in_context(span))


def _send_attributes(topic: str, key: str | None) -> dict[str, str]:
    attributes = {Attr.MESSAGING_SYSTEM: "kafka", Attr.MESSAGING_OPERATION: "send",
                  Attr.DESTINATION: topic}
    if key is not None:
        attributes[Attr.MESSAGE_KEY] = key
    return attributes


def end_publish_span(span: Span | None, parent: Span | None,
                     error: BaseException | None = None) -> None:
    """End a span of ``start_publish_span``; a failed publish marks the process span too."""
    if span is None:
        return
    if error is not None:
        mark_error(span, type(error).__name__, f"publish failed: {error!r}")
        if parent is not None and parent.is_recording():
            mark_error(parent, type(error).__name__, f"publish failed: {error!r}")
    span.end()


def mark_error(span: Span, error_type: str, message: str) -> None:
    span.set_attribute(Attr.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, message[:200]))


def end_process_span(span: Span | None, error: BaseException | None = None) -> None:
    """End an event's process span, marked as an error first when ``error`` is given (the
    event was not answered: dropped on revocation or shutdown, or its processing failed).
    Idempotent, and free when tracing is off; only the engine's sink calls it."""
    if span is None or not span.is_recording():
        return
    if error is not None:
        mark_error(span, type(error).__name__,
                   str(error) or "the event was dropped before it was answered")
    span.end()


def annotate_response(span: Span, item: WorkItem, response: ResponseEvent) -> None:
    """Session, priority, queue wait and degradation of an answered event, on its process span."""
    span.set_attributes({
        Attr.SESSION_ID: item.session_id,
        Attr.PRIORITY: item.priority.value,
        Attr.QUEUE_WAIT_MS: response.queued_ms,
        Attr.DEGRADED: list(response.degraded),
    })
    if response.degraded:
        span.add_event("degraded", {Attr.DEGRADED: list(response.degraded)})


def record_queue_wait(parent: Span, waited_s: float) -> None:
    """A child span covering the time the event waited in its lane, ending now."""
    end = time.time_ns()
    start = end - int(waited_s * 1e9)
    span = tracer().start_span(SpanName.QUEUE_WAIT, context=trace.set_span_in_context(parent),
                               start_time=start, attributes={Attr.QUEUE_WAIT_MS: waited_s * 1000})
    span.end(end_time=end)


@dataclass(frozen=True, slots=True)
class _FailedAttempt:
    attempt: int
    at_ns: int
    error_type: str
    message: str


class ProcessorSpans:
    """Pipeline observer: one span per processor call, child of the current (process) span.

    The pipeline reports each outcome after the fact with its duration, so the span is
    recorded with explicit start and end times. Each failed attempt becomes a span event at the
    time it failed: ``retry`` when another attempt followed, ``exception`` for the last one.
    """

    def __init__(self) -> None:
        # Keyed weakly by the process span: attempts of a step cancelled before its outcome
        # (engine stop) are forgotten with the span instead of piling up.
        self._failed: weakref.WeakKeyDictionary[Span, dict[str, list[_FailedAttempt]]] = (
            weakref.WeakKeyDictionary())

    @staticmethod
    def _parent() -> Span | None:
        # Events are processed concurrently: the current process span tells them apart.
        parent = trace.get_current_span()
        return parent if parent.is_recording() else None

    def on_attempt(self, name: str, attempt: int, error: BaseException | None) -> None:
        if error is None:
            return
        parent = self._parent()
        if parent is not None:
            failed = _FailedAttempt(attempt, time.time_ns(), type(error).__name__,
                                    str(error)[:200])
            self._failed.setdefault(parent, {}).setdefault(name, []).append(failed)

    def on_outcome(self, name: str, outcome: ProcessorOutcome) -> None:
        parent = self._parent()
        if parent is None:
            return
        end = time.time_ns()
        span = tracer().start_span(
            SpanName.PROCESSOR.format(name=name), context=trace.set_span_in_context(parent),
            start_time=end - int(outcome.duration_ms * 1e6),
            attributes={Attr.PROCESSOR: name, Attr.PROCESSOR_STATUS: outcome.status.value,
                        Attr.ATTEMPTS: outcome.attempts},
        )
        for failed in self._failed.get(parent, {}).pop(name, []):
            retried = failed.attempt < outcome.attempts
            span.add_event("retry" if retried else "exception", {
                "chat.processor.attempt": failed.attempt,
                "exception.type": failed.error_type,
                "exception.message": failed.message,
            }, timestamp=failed.at_ns)
        if outcome.status is not ProcessorStatus.OK:
            span.set_attribute(Attr.DEGRADED, True)
            mark_error(span, outcome.status.value, outcome.error or outcome.status.value)
        span.end(end_time=end)


_UNTRACED: AbstractContextManager[None] = nullcontext()


def traced(item: WorkItem, waited_s: float) -> AbstractContextManager[None]:
    """Run the pipeline of ``item`` inside its process span (if it has one), so processor spans
    nest under it. The span is not ended here: the engine's sink ends it, answered or not.
    Without a span: a shared context that does nothing (no generator per event)."""
    span: Span | None = item.trace
    if span is None:
        return _UNTRACED
    return _in_span(span, waited_s)


@contextmanager
def _in_span(span: Span, waited_s: float) -> Iterator[None]:
    if not span.is_recording():
        yield
        return
    record_queue_wait(span, waited_s)
    with trace.use_span(span, end_on_exit=False):
        yield
