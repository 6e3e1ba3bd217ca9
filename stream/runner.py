"""The Kafka loop: consume, decode, hand to the engine, publish, commit watermarks.

What happens to one record, top to bottom:
1. ``getmany`` fetches it; its offset is tracked as pending.
2. It is decoded. A record that fails goes to the dead-letter topic; its offset completes when
   the dead letter is acknowledged.
3. Otherwise the engine answers it (``Engine.submit``) and calls ``_deliver``, which publishes
   the response and waits for the broker's acknowledgement before completing the offset.
   If the engine fails the event, or the broker rejects its response for good, the record is
   dead-lettered instead (stage "processing" or "publish"): every record ends answered or
   dead-lettered, so no partition's commits stall behind one bad event.
4. Every ``commit_interval_ms`` the lowest incomplete offset of each partition is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from opentelemetry.trace import Span

from schemas.codec import DecodeError, decode_event, encode
from schemas.events import ChatEvent, ResponseEvent
from stream.dead_letter import FailureReason, dead_letter, without_value
from stream.kafka_config import consumer_config, producer_config
from stream.offsets import OffsetTracker
from stream.publisher import Publisher, PublishRejected
from stream.records import Delivery, RecordSource
from stream.settings import Settings
from stream.tracing import (
    SpanName,
    annotate_response,
    end_when_done,
    mark_error,
    publish_span,
    start_process_span,
)
from stream.work import Deliver, EngineStopped, WorkItem

log = logging.getLogger(__name__)

T = TypeVar("T")


class Engine(Protocol):
    """What the runner needs of an engine (concurrent manager or basic sequential path)."""

    async def start(self) -> Any: ...

    def submit(
        self, event: ChatEvent, source: RecordSource | None = None, trace: Any = None
    ) -> asyncio.Future[ResponseEvent]: ...

    @property
    def buffered(self) -> int: ...

    async def drain(self, timeout_s: float) -> bool: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...

    def release_partitions(self, partitions: Collection[TopicPartition]) -> list[WorkItem]: ...

    def get_performance_stats(self) -> dict[str, Any]: ...


EngineFactory = Callable[[Deliver], Engine]


class RunnerCounters:
    def __init__(self) -> None:
        self.consumed = 0
        self.answered = 0
        self.dead_lettered = 0
        self.degraded = 0
        self.commits = 0
        self.pauses = 0
        self.failed = 0  # decoded events dead-lettered because they could not be answered
        self.undeliverable = 0  # records neither answered nor dead-lettered (see _dead_letter_task)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    offsets: int
    oldest_timestamp_ms: int | None


class LatencyObserver(Protocol):
    def observe(self, end_to_end_s: float | None, processing_s: float) -> None: ...


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._runner.took_over(assigned)


class StreamRunner:
    """One consumer-group member. ``run`` returns after a graceful stop."""

    def __init__(self, settings: Settings, engine_factory: EngineFactory,
                 latency_observer: LatencyObserver | None = None) -> None:
        self.settings = settings
        self.latency_observer = latency_observer
        # The records this member still owes an answer, by partition and offset. Compared by
        # identity: a record fetched again after a hand-over is a new source, so work left over
        # from before cannot complete (or publish for) it.
        self._owed: dict[TopicPartition, dict[int, RecordSource]] = {}
        self._progress = asyncio.Event()
        self._engine_factory = engine_factory
        self._limits = settings.input_limits
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.counters = RunnerCounters()
        self._dead_letters: set[asyncio.Task[None]] = set()
        self._paused = False
        self._consumer: AIOKafkaConsumer | None = None
        self._publisher: Publisher | None = None
        self.engine: Engine | None = None
        self.assignment: set[TopicPartition] = set()
        # Ready = partitions assigned (not handing over) and the broker answering requests.
        self.ready = asyncio.Event()
        self.http_port: int | None = None  # set by the HTTP server (port 0 picks a free one)
        self._member_ok = False
        self._broker_ok = True

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain, commit and close everything."""
        producer = AIOKafkaProducer(**producer_config(self.settings))
        consumer = AIOKafkaConsumer(**consumer_config(self.settings))
        await producer.start()
        try:
            self._publisher = Publisher(producer)
            self.engine = self._engine_factory(self._deliver)
            await self.engine.start()
            try:
                await consumer.start()
            except BaseException:
                await self.engine.stop(timeout_s=0.5)
                raise
            self._consumer = consumer
            consumer.subscribe([self.settings.inbound_topic], listener=_Rebalance(self))
            watchdog = asyncio.create_task(self._watch_broker())
            try:
                await self._consume_until(stop)
            finally:
                watchdog.cancel()
                await self._shut_down(consumer)
        finally:
            await _bounded(producer.stop(), 1.0, "producer stop")

    async def _consume_until(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        next_commit = time.monotonic()
        stop_waiter = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                fetched = await _unless_stopped(self._consumer.getmany(
                    timeout_ms=200, max_records=self.settings.max_poll_records), stop_waiter)
                if fetched is None:
                    break
                for records in fetched.values():
                    for record in records:
                        self._handle(record)
                self._apply_backpressure()
                if time.monotonic() >= next_commit:
                    # Raced with stop too: a commit waiting on an absent broker must not delay it.
                    await _unless_stopped(self.commit(), stop_waiter)
                    next_commit = time.monotonic() + self.settings.commit_interval_ms / 1000
        finally:
            stop_waiter.cancel()

    def _handle(self, record: Any) -> None:
        assert self.engine is not None
        source = RecordSource.from_record(record)
        self.offsets.track(source.tp, source.offset)
        self._owed.setdefault(source.tp, {})[source.offset] = source
        self.counters.consumed += 1
        try:
            event = decode_event(record.value, self._limits)
        except DecodeError as error:
            span = start_process_span(source, self.settings.group_id, None)
            mark_error(span, error.error_type, error.message)
            self._send_dead_letter(dead_letter(self.settings.dlq_topic, source, record.value, error),
                                   source, span)
            return
        span = start_process_span(source, self.settings.group_id, event)
        answer = self.engine.submit(event, source=source, trace=span)
        end_when_done(span, answer)
        answer.add_done_callback(functools.partial(self._settled, source, record.value, span))

    def _owns(self, source: RecordSource) -> bool:
        """Whether ``source`` is still this member's to answer (not handed over, not done)."""
        return self._owed.get(source.tp, {}).get(source.offset) is source

    def _complete(self, source: RecordSource) -> None:
        if self._owed.get(source.tp, {}).pop(source.offset, None) is source:
            self.offsets.complete(source.tp, source.offset)
            self._progress.set()

    def _settled(self, source: RecordSource, value: bytes | None, span: Span | None,
                 answer: asyncio.Future[ResponseEvent]) -> None:
        """An event the engine failed is dead-lettered, so its offset can complete."""
        if answer.cancelled() or (error := answer.exception()) is None:
            return
        if isinstance(error, EngineStopped) or not self._owns(source):
            return  # left to whoever answers the partition next
        self.counters.failed += 1
        log.error("event at %s[%d]@%d not answered (%s): dead-lettering it", source.tp.topic,
                  source.tp.partition, source.offset, error)
        if isinstance(error, PublishRejected):  # name the broker's error, not our wrapper
            reason = FailureReason("publish", type(error.error).__name__, str(error))
        else:
            reason = FailureReason.of("processing", error)
        self._send_dead_letter(dead_letter(self.settings.dlq_topic, source, value, reason),
                               source, span)

    def _send_dead_letter(self, delivery: Delivery, source: RecordSource,
                          span: Span | None) -> None:
        task = asyncio.create_task(self._dead_letter_task(delivery, source, span))
        self._dead_letters.add(task)
        task.add_done_callback(self._dead_letters.discard)

    async def _dead_letter_task(self, delivery: Delivery, source: RecordSource,
                                span: Span | None) -> None:
        """Publish a dead letter, then complete the offset. If the DLQ refuses the record, send
        the reason without the original bytes; if it refuses that too, the record is counted
        undeliverable and its offset completes anyway (logged), as waiting cannot fix it and
        would stall the partition."""
        assert self._publisher is not None
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
            if span is not None and span.is_recording():
                span.end()
        self._complete(source)

    async def _deliver(self, item: WorkItem, response: ResponseEvent) -> None:
        """Publish one response and wait for its ack; only then may its offset commit."""
        assert self._publisher is not None
        if item.source is not None and not self._owns(item.source):
            # Handed over while in flight: the partition's new owner answers it.
            raise EngineStopped("partition revoked while the event was in flight")
        span: Span | None = item.trace
        try:
            if span is not None:
                annotate_response(span, item, response)
            with publish_span(span, self.settings.response_topic, response.channel_id) as headers:
                await self._publisher.publish(Delivery(
                    topic=self.settings.response_topic,
                    key=response.channel_id.encode(),
                    value=encode(response),
                    headers=headers,
                ))
        finally:
            if span is not None:
                span.end()
        self.counters.answered += 1
        self.counters.degraded += bool(response.degraded)
        if item.source is not None:
            self._complete(item.source)
            if self.latency_observer is not None:
                sent_ms = item.source.timestamp_ms
                try:
                    self.latency_observer.observe(
                        time.time() - sent_ms / 1000 if sent_ms else None,
                        response.processing_ms / 1000)
                except Exception:  # metrics must not turn an answered event into a failure
                    log.exception("latency observer failed")

    def _apply_backpressure(self) -> None:
        """Pause every owned partition while too much is buffered; resume below half of it."""
        assert self._consumer is not None and self.engine is not None
        buffered = self.engine.buffered + len(self._dead_letters)
        limit = self.settings.max_buffered
        if not self._paused and buffered >= limit:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True
            self.counters.pauses += 1
        elif self._paused and buffered <= limit // 2:
            self._consumer.resume(*self._consumer.assignment())
            self._paused = False

    async def commit(self, partitions: Collection[TopicPartition] | None = None,
                     timeout_s: float | None = None) -> None:
        """Commit the watermark of each partition that advanced (all owned ones by default),
        waiting at most ``timeout_s`` (``commit_timeout_seconds`` by default)."""
        points = self._commit_points(partitions)
        if await self._send_commit(points, timeout_s):
            self.offsets.mark_committed(points)

    def _commit_points(self, partitions: Collection[TopicPartition] | None
                       ) -> dict[TopicPartition, int]:
        owned = self.assignment if partitions is None else set(partitions)
        return {tp: offset for tp, offset in self.offsets.commit_points().items() if tp in owned}

    async def _send_commit(self, points: dict[TopicPartition, int],
                           timeout_s: float | None = None) -> bool:
        if self._consumer is None or not points:
            return False
        timeout_s = self.settings.commit_timeout_seconds if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._consumer.commit(points)
        except (KafkaError, TimeoutError) as exc:
            # The group is rebalancing or the broker is away. A timed-out request may still
            # land; either way the next commit carries these offsets too (offsets only grow),
            # and after a shutdown the next owner resumes from the last commit that landed.
            log.warning("commit of %d partitions failed: %r", len(points), exc)
            return False
        self.counters.commits += 1
        return True

    # -- group membership --------------------------------------------------------------------

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        """On revocation: finish in-flight work of those partitions within the deadline, commit,
        then release their sessions. Work still queued past the deadline is left to the next
        owner (its offsets are not committed)."""
        if not revoked or self.engine is None:
            return
        self._member_ok = False
        self._refresh_ready()
        deadline = time.monotonic() + self.settings.rebalance_timeout_seconds
        await self._wait_for_completion(revoked, self.settings.rebalance_timeout_seconds)
        dropped = self.engine.release_partitions(revoked)
        points = self._commit_points(revoked)
        # Let go before the commit's round trip: from here, work still in flight for these
        # partitions neither publishes nor completes (the next owner answers it).
        for tp in revoked:
            self.offsets.forget(tp)
            self._owed.pop(tp, None)
        self.assignment -= revoked
        await self._send_commit(points, timeout_s=max(0.5, deadline - time.monotonic()))
        log.info("handed over %d partitions (%d queued events left to the next owner)",
                 len(revoked), len(dropped))

    async def _wait_for_completion(self, partitions: Collection[TopicPartition],
                                   timeout_s: float) -> bool:
        """Wait until no offset of ``partitions`` is pending; False if the timeout passed."""
        try:
            async with asyncio.timeout(timeout_s):
                while any(self.offsets.pending(tp) for tp in partitions):
                    self._progress.clear()
                    await self._progress.wait()
            return True
        except TimeoutError:
            return False

    def lag(self) -> dict[TopicPartition, PartitionLag]:
        """Per owned partition: records not yet answered, and the oldest one's timestamp."""
        if self._consumer is None:
            return {}
        result = {}
        for tp in self.assignment:
            highwater = self._consumer.highwater(tp)
            committable = self.offsets.committable(tp)
            if highwater is None or committable is None:
                continue
            owed = self._owed.get(tp) or {}
            timestamps = [s.timestamp_ms for s in owed.values() if s.timestamp_ms]
            result[tp] = PartitionLag(max(0, highwater - committable),
                                      min(timestamps) if timestamps else None)
        return result

    def took_over(self, assigned: set[TopicPartition]) -> None:
        self.assignment = set(assigned)
        if self._paused and self._consumer is not None:
            self._consumer.pause(*assigned)
        self._member_ok = bool(assigned)
        self._refresh_ready()
        log.info("assigned %d partitions", len(assigned))

    def _refresh_ready(self) -> None:
        if self._member_ok and self._broker_ok:
            self.ready.set()
        else:
            self.ready.clear()

    async def _watch_broker(self, interval_s: float = 1.0) -> None:
        """Keep a metadata request going; while one stays unanswered for a session timeout, or
        fails, the member is not ready.

        A frozen or unreachable broker does not make aiokafka fail anything quickly: fetches,
        commits and publishes just wait (they resume when it is back, losing nothing), so
        without this probe /readyz would say ready throughout an outage.
        """
        assert self._consumer is not None
        stall_s = self.settings.session_timeout_ms / 1000
        probe: asyncio.Future[Any] | None = None
        try:
            while True:
                probe = asyncio.ensure_future(self._consumer.topics())
                done, _ = await asyncio.wait({probe}, timeout=stall_s)
                if not done:
                    self._set_broker_ok(False, f"no answer for {stall_s:.1f} s")
                    await asyncio.wait({probe})  # not cancelled: the answer may still come
                error = probe.exception()
                self._set_broker_ok(error is None, str(error))
                await asyncio.sleep(interval_s)
        finally:
            if probe is not None and not probe.done():
                probe.cancel()

    def _set_broker_ok(self, ok: bool, why: str) -> None:
        if ok != self._broker_ok:
            if ok:
                log.info("broker answers again: ready if partitions are assigned")
            else:
                log.warning("broker not answering (%s): not ready", why)
        self._broker_ok = ok
        self._refresh_ready()

    async def _shut_down(self, consumer: AIOKafkaConsumer) -> None:
        """Stop fetching, drain within the shutdown timeout, commit, close.

        Every step is bounded, so a stop with the broker away still returns in about the
        shutdown timeout (plus the short grace periods), committing what it can.
        """
        consumer.pause(*consumer.assignment())
        timeout = self.settings.shutdown_timeout_seconds
        deadline = time.monotonic() + timeout
        if self.engine is not None:
            drained = await self.engine.drain(timeout)
            # Stop (its short grace period may still complete events) before the final commit,
            # so every acknowledged response counts; then wait for dead letters, including those
            # of events that failed during the grace period.
            await self.engine.stop(timeout_s=0.5)
            if self._dead_letters:
                await asyncio.wait(set(self._dead_letters),
                                   timeout=max(0.1, deadline - time.monotonic()))
            await self.commit(timeout_s=max(0.5, deadline - time.monotonic()))
            if not drained:
                log.warning("shutdown timeout: %d events left unanswered and uncommitted",
                            self.engine.buffered)
        for task in self._dead_letters:
            task.cancel()
        await asyncio.gather(*self._dead_letters, return_exceptions=True)
        self._member_ok = False
        self._refresh_ready()
        await _bounded(consumer.stop(), max(1.0, deadline - time.monotonic()), "consumer stop")


async def _unless_stopped(step: Coroutine[Any, Any, T], stop: asyncio.Future[Any]) -> T | None:
    """``step``'s result, or None if ``stop`` completes first (``step`` is then cancelled)."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _bounded(step: Any, timeout_s: float, what: str) -> None:
    """Await a closing step for at most ``timeout_s``: on shutdown, an unreachable broker must
    not keep the process alive."""
    try:
        async with asyncio.timeout(timeout_s):
            await step
    except TimeoutError:
        log.warning("%s did not finish within %.1f s; going on", what, timeout_s)
