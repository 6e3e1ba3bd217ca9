"""The Kafka sink: how every record ends, answered or dead-lettered, in one place.

For each record, exactly one of:
- ``answered``: the response is published and acknowledged, then the offset completes.
  A response the broker refuses for good (``PublishRejected``) is dead-lettered instead
  (stage "publish").
- ``failed`` with an error from processing: the record is dead-lettered (stage "processing").
- ``rejected`` (a record that did not decode): dead-lettered with the decoder's reason.
- ``failed`` with ``EngineStopped``, or any outcome for a record no longer owned (its partition
  was handed over): nothing is published and the offset stays uncommitted; the partition's
  next owner answers it.
A dead letter's offset completes once the dead letter is acknowledged. If the dead-letter topic
refuses the record, its reason is sent without the original bytes; if it refuses that too, the
record is counted undeliverable and its offset completes anyway (logged), as waiting cannot fix
it and would stall the partition. The event's process span ends here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from opentelemetry.trace import Span

from schemas.codec import encode
from schemas.events import ResponseEvent
from stream.engine.work import EngineStopped, WorkItem
from stream.kafka.dead_letter import FailureReason, Reason, dead_letter, without_value
from stream.kafka.ledger import CommitLedger
from stream.kafka.publisher import PublishRejected
from stream.kafka.records import Delivery, RecordSource
from stream.observability.counters import EventCounters
from stream.observability.tracing import (
    SpanName,
    annotate_response,
    end_process_span,
    publish_span,
)

__all__ = ["KafkaSink", "LatencyObserver", "Publishes", "StateLog"]

log = logging.getLogger(__name__)


class Publishes(Protocol):
    """``Publisher``: sends one delivery and returns once the broker acknowledged it."""

    async def publish(self, delivery: Delivery) -> Any: ...

    async def publish_all(self, deliveries: list[Delivery]) -> Any: ...


class StateLog(Protocol):
    """``Changelog``: the record of an answered item's session state, if it has one."""

    def delivery(self, item: WorkItem) -> Delivery | None: ...


class LatencyObserver(Protocol):
    def observe(self, end_to_end_s: float | None, processing_s: float) -> None: ...


class KafkaSink:
    def __init__(self, publisher: Publishes, ledger: CommitLedger, counters: EventCounters, *,
                 response_topic: str, dlq_topic: str,
                 latency_observer: LatencyObserver | None = None,
                 changelog: StateLog | None = None) -> None:
        self.counters = counters
        self._publisher = publisher
        self._ledger = ledger
        self._response_topic = response_topic
        self._dlq_topic = dlq_topic
        self._latency_observer = latency_observer
        self._changelog = changelog
        self._dead_letters: set[asyncio.Task[None]] = set()

    # -- the engine's exit ---------------------------------------------------------------------

    async def answered(self, item: WorkItem, response: ResponseEvent) -> None:
        """Publish the response and wait for its ack; only then may its offset commit."""
        source: RecordSource | None = item.source
        if source is not None and not self._ledger.owns(source):
            end_process_span(item.trace, EngineStopped("partition handed over in flight"))
            return
        span: Span | None = item.trace
        delivery = Delivery(topic=self._response_topic, key=response.channel_id.encode(),
                            value=encode(response))
        state = self._changelog.delivery(item) if self._changelog is not None else None
        try:
            if span is None:  # tracing off: no span calls on the per-event path
                await self._publish(delivery, state)
            else:
                annotate_response(span, item, response)
                with publish_span(span, self._response_topic, response.channel_id,
                                  name=SpanName.RESPONSE_PUBLISH) as headers:
                    delivery.headers = headers
                    await self._publish(delivery, state)
        except PublishRejected as rejected:
            self._fail(item, rejected, FailureReason("publish", type(rejected.error).__name__,
                                                     str(rejected)))
            return
        except BaseException as error:  # stopping (cancelled, producer closed): next owner
            end_process_span(span, error)
            if not isinstance(error, Exception):
                raise
            log.warning("response to %s not published (%r); its offset stays uncommitted",
                        item.event.event_id, error)
            return
        end_process_span(span)
        self.counters.answered += 1
        self.counters.degraded += bool(response.degraded)
        if source is not None:
            self._ledger.complete(source)
            self._observe_latency(source, response)

    async def _publish(self, response: Delivery, state: Delivery | None) -> None:
        # The session's new state goes out with its response; both acks precede the offset.
        if state is None:
            await self._publisher.publish(response)
        else:
            await self._publisher.publish_all([response, state])

    def failed(self, item: WorkItem, error: BaseException) -> None:
        """Dead-letter an event the engine could not answer; a dropped one is left as it is."""
        source: RecordSource | None = item.source
        if isinstance(error, EngineStopped | asyncio.CancelledError) or source is None \
                or not self._ledger.owns(source):
            end_process_span(item.trace, error)
            return
        self._fail(item, error, FailureReason.of("processing", error))

    def rejected(self, source: RecordSource, reason: Reason, span: Span | None) -> None:
        """Dead-letter a record that is not a valid event (``reason`` from the decoder)."""
        self._send_dead_letter(dead_letter(self._dlq_topic, source, source.value, reason),
                               source, span)

    # -- dead letters --------------------------------------------------------------------------

    @property
    def dead_letters_in_flight(self) -> int:
        return len(self._dead_letters)

    async def wait_for_dead_letters(self, timeout_s: float) -> None:
        if self._dead_letters:
            await asyncio.wait(set(self._dead_letters), timeout=timeout_s)

    async def cancel_dead_letters(self) -> None:
        for task in self._dead_letters:
            task.cancel()
        await asyncio.gather(*self._dead_letters, return_exceptions=True)

    def _fail(self, item: WorkItem, error: BaseException, reason: FailureReason) -> None:
        source: RecordSource = item.source
        self.counters.failed += 1
        log.error("event at %s[%d]@%d not answered (%s): dead-lettering it", source.tp.topic,
                  source.tp.partition, source.offset, error)
        self._send_dead_letter(dead_letter(self._dlq_topic, source, source.value, reason),
                               source, item.trace)

    def _send_dead_letter(self, delivery: Delivery, source: RecordSource,
                          span: Span | None) -> None:
        task = asyncio.create_task(self._dead_letter(delivery, source, span))
        self._dead_letters.add(task)
        task.add_done_callback(self._dead_letters.discard)

    async def _dead_letter(self, delivery: Delivery, source: RecordSource,
                           span: Span | None) -> None:
        try:
            try:
                with publish_span(span, delivery.topic, None, name=SpanName.DEAD_LETTER):
                    await self._publisher.publish(delivery)
            except PublishRejected as rejected:
                log.warning("dead-letter topic refused the record (%s); sending its reason only",
                            rejected.error)
                with publish_span(span, delivery.topic, None, name=SpanName.DEAD_LETTER):
                    await self._publisher.publish(without_value(delivery, str(rejected)))
            self.counters.dead_lettered += 1
        except PublishRejected as rejected:
            self.counters.undeliverable += 1
            log.error("record %s[%d]@%d can be neither answered nor dead-lettered: %s",
                      source.tp.topic, source.tp.partition, source.offset, rejected)
        except Exception:  # the producer closed (stopping) or a bug: the next owner retries it
            log.exception("dead letter for %s[%d]@%d not sent; its offset stays uncommitted",
                          source.tp.topic, source.tp.partition, source.offset)
            return
        finally:
            end_process_span(span)
        self._ledger.complete(source)

    def _observe_latency(self, source: RecordSource, response: ResponseEvent) -> None:
        if self._latency_observer is None:
            return
        sent_ms = source.timestamp_ms
        try:
            self._latency_observer.observe(time.time() - sent_ms / 1000 if sent_ms else None,
                                           response.processing_ms / 1000)
        except Exception:  # metrics must not turn an answered event into a failure
            log.exception("latency observer failed")


