"""The Kafka loop: consume, decode, hand to the engine, publish, commit watermarks.

What happens to one record, top to bottom:
1. ``getmany`` fetches it; its offset is tracked as pending.
2. It is decoded. A record that fails goes to the dead-letter topic; its offset completes when
   the dead letter is acknowledged.
3. Otherwise the engine answers it (``Engine.submit``) and calls ``_deliver``, which publishes
   the response and waits for the broker's acknowledgement before completing the offset.
4. Every ``commit_interval_ms`` the lowest incomplete offset of each partition is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from opentelemetry.trace import Span

from schemas.codec import DecodeError, decode_event, encode
from schemas.events import ChatEvent, ResponseEvent
from stream.dead_letter import dead_letter
from stream.kafka_config import consumer_config, producer_config
from stream.offsets import OffsetTracker
from stream.publisher import Publisher
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
from stream.work import Deliver, WorkItem

log = logging.getLogger(__name__)


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
        self._pending_since: dict[TopicPartition, dict[int, int | None]] = {}
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
            await consumer.start()
            self._consumer = consumer
            consumer.subscribe([self.settings.inbound_topic], listener=_Rebalance(self))
            watchdog = asyncio.create_task(self._watch_broker())
            try:
                await self._consume_until(stop)
            finally:
                watchdog.cancel()
                await self._shut_down(consumer)
        finally:
            await producer.stop()

    async def _consume_until(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        next_commit = time.monotonic()
        stop_waiter = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.create_task(
                    self._consumer.getmany(timeout_ms=200, max_records=self.settings.max_poll_records)
                )
                await asyncio.wait({fetch, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                for records in fetch.result().values():
                    for record in records:
                        self._handle(record)
                self._apply_backpressure()
                if time.monotonic() >= next_commit:
                    await self.commit()
                    next_commit = time.monotonic() + self.settings.commit_interval_ms / 1000
        finally:
            stop_waiter.cancel()

    def _handle(self, record: Any) -> None:
        assert self.engine is not None
        source = RecordSource.from_record(record)
        self.offsets.track(source.tp, source.offset)
        self._pending_since.setdefault(source.tp, {})[source.offset] = source.timestamp_ms
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
        end_when_done(span, self.engine.submit(event, source=source, trace=span))

    def _complete(self, source: RecordSource) -> None:
        self.offsets.complete(source.tp, source.offset)
        self._pending_since.get(source.tp, {}).pop(source.offset, None)
        self._progress.set()

    def _send_dead_letter(self, delivery: Delivery, source: RecordSource, span: Span) -> None:
        async def publish() -> None:
            assert self._publisher is not None
            try:
                with publish_span(span, delivery.topic, None, name=SpanName.DEAD_LETTER):
                    await self._publisher.publish(delivery)
            finally:
                span.end()
            self.counters.dead_lettered += 1
            self._complete(source)

        task = asyncio.create_task(publish())
        self._dead_letters.add(task)
        task.add_done_callback(self._dead_letters.discard)

    async def _deliver(self, item: WorkItem, response: ResponseEvent) -> None:
        """Publish one response and wait for its ack; only then may its offset commit."""
        assert self._publisher is not None
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
                self.latency_observer.observe(
                    time.time() - sent_ms / 1000 if sent_ms else None,
                    response.processing_ms / 1000)

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

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit the watermark of each partition that advanced (all owned ones by default)."""
        if self._consumer is None:
            return
        points = self.offsets.commit_points()
        owned = self.assignment if partitions is None else set(partitions)
        points = {tp: offset for tp, offset in points.items() if tp in owned}
        if not points:
            return
        try:
            await self._consumer.commit(points)
        except KafkaError as exc:  # the group is rebalancing or the broker is away: retried later
            log.warning("commit of %d partitions failed: %s", len(points), exc)
            return
        self.offsets.mark_committed(points)
        self.counters.commits += 1

    # -- group membership --------------------------------------------------------------------

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        """On revocation: finish in-flight work of those partitions within the deadline, commit,
        then release their sessions. Work still queued past the deadline is left to the next
        owner (its offsets are not committed)."""
        if not revoked or self.engine is None:
            return
        self._member_ok = False
        self._refresh_ready()
        await self._wait_for_completion(revoked, self.settings.rebalance_timeout_seconds)
        dropped = self.engine.release_partitions(revoked)
        await self.commit(revoked)
        for tp in revoked:
            self.offsets.forget(tp)
            self._pending_since.pop(tp, None)
        self.assignment -= revoked
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
            pending = self._pending_since.get(tp) or {}
            timestamps = [ts for ts in pending.values() if ts]
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
        """Stop fetching, drain within the shutdown timeout, commit, close."""
        consumer.pause(*consumer.assignment())
        timeout = self.settings.shutdown_timeout_seconds
        started = time.monotonic()
        if self.engine is not None:
            drained = await self.engine.drain(timeout)
            if self._dead_letters:
                await asyncio.wait(set(self._dead_letters),
                                   timeout=max(0.1, timeout - (time.monotonic() - started)))
            # Stop (its short grace period may still complete events) before the final commit,
            # so every acknowledged response counts.
            await self.engine.stop(timeout_s=0.5)
            await self.commit()
            if not drained:
                log.warning("shutdown timeout: %d events left unanswered and uncommitted",
                            self.engine.buffered)
        for task in self._dead_letters:
            task.cancel()
        self._member_ok = False
        self._refresh_ready()
        await consumer.stop()
