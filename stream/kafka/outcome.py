"""The Kafka sink: how every record ends, answered or dead-lettered, in one place.

For each record, exactly one of:
- ``answered``: the response, and the session's new state when there is a changelog, are
  queued in order (``OrderedBatches``); once both are acknowledged the offset completes.
  A response the broker refuses for good (``PublishRejected``) is dead-lettered instead
  (stage "publish"). A state record it refuses for good leaves the answer as it is: it counts
  as acknowledged (logged, ``states_refused``), the session's restored history misses it.
- ``failed`` with an error from processing: the record is dead-lettered (stage "processing"),
  as is an answer that cannot even be queued (a bug: its response or state cannot be encoded).
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
from stream.kafka.batches import Done
from stream.kafka.dead_letter import FailureReason, Reason, dead_letter, without_value
from stream.kafka.ledger import CommitLedger
from stream.kafka.publisher import PublishRejected
from stream.kafka.records import Delivery, RecordSource
from stream.observability.counters import EventCounters
from stream.observability.tracing import (
    SpanName,
    annotate_response,
    end_process_span,
    end_publish_span,
    publish_span,
    start_publish_span,
)

__all__ = ["Batches", "KafkaSink", "LatencyObserver", "Publishes", "StateLog"]

log = logging.getLogger(__name__)


class Publishes(Protocol):
    """``Publisher``: sends one delivery and returns once the broker acknowledged it."""

    async def publish(self, delivery: Delivery) -> Any: ...


class Batches(Protocol):
    """``OrderedBatches``: queues deliveries in order, reports each one's acknowledgement."""

    def partition_of(self, topic: str, key: bytes) -> int: ...

    def add(self, delivery: Delivery, on_done: Done, coalesce: bool = False) -> None: ...

    async def flush(self, timeout_s: float) -> bool: ...

    async def close(self) -> None: ...


class StateLog(Protocol):
    """``Changelog``: the records of an answered item's session state, if it has one."""

    def deliveries(self, item: WorkItem) -> list[Delivery]: ...


class LatencyObserver(Protocol):
    def observe(self, end_to_end_s: float | None, processing_s: float) -> None: ...


class KafkaSink:
    def __init__(self, publisher: Publishes, batches: Batches, ledger: CommitLedger,
                 counters: EventCounters, *, response_topic: str, dlq_topic: str,
                 latency_observer: LatencyObserver | None = None,
                 changelog: StateLog | None = None) -> None:
        self.counters = counters
        self._publisher = publisher
        self._batches = batches
        self._ledger = ledger
        self._response_topic = response_topic
        self._dlq_topic = dlq_topic
        self._latency_observer = latency_observer
        self._changelog = changelog
        self._dead_letters: set[asyncio.Task[None]] = set()
        self._awaiting = 0  # answers queued and not yet acknowledged (or failed)

    # -- the engine's exit ---------------------------------------------------------------------

    def answered(self, item: WorkItem, response: ResponseEvent) -> None:
        """Queue the response (and the session's new state) in order; the offset completes
        once both are acknowledged (``_Acks``)."""
        source: RecordSource | None = item.source
        if source is not None and not self._ledger.owns(source):
            end_process_span(item.trace, EngineStopped("partition handed over in flight"))
            return
        key = response.channel_id.encode()
        try:  # everything that can fail before anything is queued: then the record still ends
            delivery = Delivery(topic=self._response_topic, key=key, value=encode(response),
                                partition=self._batches.partition_of(self._response_topic, key))
            states = self._changelog.deliveries(item) if self._changelog is not None else ()
        except Exception as error:  # a bug (an answer that cannot be encoded), not load
            log.exception("answer to event %s could not be queued", item.event.event_id)
            self.failed(item, error)
            return
        span: Span | None = item.trace
        publishing = None
        if span is not None:  # tracing off: no span calls on the per-event path
            annotate_response(span, item, response)
            publishing, delivery.headers = start_publish_span(
                span, self._response_topic, response.channel_id, SpanName.RESPONSE_PUBLISH)
        acks = _Acks(self, source, item.trace, publishing, bool(response.degraded),
                     response.processing_ms / 1000, 1 + len(states))
        self._awaiting += 1
        self._batches.add(delivery, acks.done)
        for state in states:  # a later record of the same key still queued replaces it
            self._batches.add(state, acks.state_done, coalesce=True)

    def _state_refused(self, error: PublishRejected) -> None:
        self.counters.states_refused += 1
        log.warning("session state record refused for good (%s): the answer stands, and the "
                    "session's restored history will miss it", error)

    def _published(self, source: RecordSource | None, trace: Span | None,
                   publishing: Span | None, degraded: bool, processing_s: float) -> None:
        self._awaiting -= 1
        end_publish_span(publishing, trace)
        end_process_span(trace)
        self.counters.answered += 1
        self.counters.degraded += degraded
        if source is not None:
            self._ledger.complete(source)
            self._observe_latency(source, processing_s)

    def _not_published(self, source: RecordSource | None, trace: Span | None,
                       publishing: Span | None, error: BaseException) -> None:
        self._awaiting -= 1
        end_publish_span(publishing, trace, error)
        if isinstance(error, PublishRejected) and source is not None:
            self._fail(source, trace, error, FailureReason("publish", type(error.error).__name__,
                                                           str(error)))
            return
        end_process_span(trace, error)  # stopping (producer closed): the next owner
        if source is not None:
            log.warning("response to %s[%d]@%d not published (%r); its offset stays "
                        "uncommitted", source.tp.topic, source.tp.partition, source.offset,
                        error)
        else:
            log.warning("response not published (%r)", error)

    @property
    def in_flight(self) -> int:
        """Answers waiting for their acknowledgements, and dead letters being sent (counted
        by event, as the engine's ``buffered`` is, for backpressure)."""
        return self._awaiting + len(self._dead_letters)

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued answer is acknowledged or failed; False on timeout."""
        return await self._batches.flush(timeout_s)

    async def close(self) -> None:
        """Cancel answers still waiting (their offsets stay uncommitted) and dead letters."""
        await self._batches.close()
        await self.cancel_dead_letters()

    def failed(self, item: WorkItem, error: BaseException) -> None:
        """Dead-letter an event the engine could not answer; a dropped one is left as it is."""
        source: RecordSource | None = item.source
        if isinstance(error, EngineStopped | asyncio.CancelledError) or source is None \
                or not self._ledger.owns(source):
            end_process_span(item.trace, error)
            return
        self._fail(source, item.trace, error, FailureReason.of("processing", error))

    def rejected(self, source: RecordSource, reason: Reason, span: Span | None) -> None:
        """Dead-letter a record that is not a valid event (``reason`` from the decoder)."""
        self._send_dead_letter(dead_letter(self._dlq_topic, source, source.value, reason),
                               source, span)

    # -- dead letters --------------------------------------------------------------------------

    async def wait_for_dead_letters(self, timeout_s: float) -> None:
        if self._dead_letters:
            await asyncio.wait(set(self._dead_letters), timeout=timeout_s)

    async def cancel_dead_letters(self) -> None:
        for task in self._dead_letters:
            task.cancel()
        await asyncio.gather(*self._dead_letters, return_exceptions=True)

    def _fail(self, source: RecordSource, trace: Span | None, error: BaseException,
              reason: FailureReason) -> None:
        self.counters.failed += 1
        log.error("event at %s[%d]@%d not answered (%s): dead-lettering it", source.tp.topic,
                  source.tp.partition, source.offset, error)
        self._send_dead_letter(dead_letter(self._dlq_topic, source, source.value, reason),
                               source, trace)

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

    def _observe_latency(self, source: RecordSource, processing_s: float) -> None:
        if self._latency_observer is None:
            return
        sent_ms = source.timestamp_ms
        try:
            self._latency_observer.observe(time.time() - sent_ms / 1000 if sent_ms else None,
                                           processing_s)
        except Exception:  # metrics must not turn an answered event into a failure
            log.exception("latency observer failed")


class _Acks:
    """Counts the acknowledgements an answer waits for (its response, its session state);
    the first failure decides the answer's fate, and later reports are ignored. It keeps only
    what that fate needs, not the work item or the response: those are freed once the answer
    is queued, while still in the processor's cache, instead of a broker round trip later."""

    __slots__ = ("_degraded", "_processing_s", "_publishing", "_remaining", "_sink", "_source",
                 "_trace")

    def __init__(self, sink: KafkaSink, source: RecordSource | None, trace: Span | None,
                 publishing: Span | None, degraded: bool, processing_s: float,
                 remaining: int) -> None:
        self._sink, self._source, self._trace, self._publishing = sink, source, trace, publishing
        self._degraded, self._processing_s, self._remaining = degraded, processing_s, remaining

    def state_done(self, error: BaseException | None) -> None:
        """A session state record's report (one call for each answer whose record it was or
        superseded): refused for good, it stands acknowledged; it is state, not the answer,
        and dead-lettering an event its response may already have answered would give it two
        results. Other errors (stopping) leave the offset owed, as ``done``'s do."""
        if isinstance(error, PublishRejected):
            if self._remaining != 0:
                self._sink._state_refused(error)
            error = None
        self.done(error)

    def done(self, error: BaseException | None) -> None:
        if self._remaining == 0:
            return
        if error is not None:
            self._remaining = 0
            self._sink._not_published(self._source, self._trace, self._publishing, error)
            return
        self._remaining -= 1
        if self._remaining == 0:
            self._sink._published(self._source, self._trace, self._publishing, self._degraded,
                                  self._processing_s)
