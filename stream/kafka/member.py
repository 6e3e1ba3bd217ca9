"""One consumer-group member: the loop, delegating each concern to an object of its own.

What happens to one record, top to bottom:
1. ``getmany`` fetches it (``take_in_turn``: a share of each partition's records per call);
   the ``CommitLedger`` tracks it as owed.
2. It is decoded. A record that fails is handed to the ``KafkaSink`` as rejected (dead letter).
3. Otherwise the engine admits it (``Engine.submit``) and, once done, hands it to the same
   sink: ``answered`` queues the response in order (``OrderedBatches``), ``failed``
   dead-letters it. Only once that is acknowledged does the ledger complete its offset: every
   record ends answered or dead-lettered.
4. Every ``commit_interval_ms`` the ledger commits each owned partition's watermark.
Around the loop: ``Backpressure`` pauses partitions while too much is buffered, ``Membership``
hands partitions over on a rebalance, ``Readiness`` says whether ``/readyz`` is green.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from aiokafka.structs import TopicPartition

from schemas.codec import DecodeError, decode_event
from schemas.events import ChatEvent
from stream.engine.sink import Sink
from stream.engine.work import WorkItem
from stream.kafka.backpressure import Backpressure, starving_limit
from stream.kafka.batches import OrderedBatches
from stream.kafka.changelog import Changelog
from stream.kafka.config import (
    ClientStartFailed,
    broker_failure,
    consumer_config,
    producer_config,
)
from stream.kafka.fair_fetch import Taken, take_in_turn
from stream.kafka.handover import Membership
from stream.kafka.ledger import CommitLedger
from stream.kafka.offsets import OffsetTracker
from stream.kafka.outcome import KafkaSink, LatencyObserver
from stream.kafka.publisher import Publisher
from stream.kafka.readiness import Readiness
from stream.kafka.records import RecordSource
from stream.kafka.topics import TopicMissing, check_copartitioned
from stream.observability.counters import EventCounters
from stream.observability.tracing import mark_error, start_process_span, tracing_on
from stream.settings import Settings

__all__ = ["SHUTDOWN_GRACE_S", "Engine", "EngineFactory", "PartitionLag", "StreamRunner"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Records taken between two turns of the event loop (measured: 32 doubled the passthrough rate
# over a whole fetch at once, and kept less in memory).
_RECORDS_BETWEEN_PAUSES = 32

# A stop's steps beyond the drain, each bounded, so that a stop with the broker away still ends:
# the fetch under way when the signal came (given up once it has run twice its wait: see
# ``_StuckFetch``), then after the drain deadline a short grace each for the engine's stop, the
# last publishes, the dead letters and the final commit, and at most a second each for the
# consumer (leaving the group) and the producer.
_FETCH_WAIT_S = 0.2
_STUCK_FETCH_S = 2 * _FETCH_WAIT_S
_ENGINE_GRACE_S = 0.5
_FLUSH_GRACE_S = 0.1
_DEAD_LETTER_GRACE_S = 0.1
_COMMIT_GRACE_S = 0.5
_CLIENT_STOP_S = 1.0
SHUTDOWN_GRACE_S = (_STUCK_FETCH_S + _ENGINE_GRACE_S + _FLUSH_GRACE_S + _DEAD_LETTER_GRACE_S
                    + _COMMIT_GRACE_S + 2 * _CLIENT_STOP_S)
"""The most a member's stop takes beyond ``CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS``."""


class Engine(Protocol):
    """What the member needs of an engine (concurrent manager or sequential path)."""

    async def start(self) -> Any: ...

    def submit(self, event: ChatEvent, source: Any = None, trace: Any = None) -> WorkItem: ...

    @property
    def buffered(self) -> int: ...

    async def drain(self, timeout_s: float) -> bool: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...

    def release_partitions(self, partitions: Collection[Hashable]) -> list[WorkItem]: ...

    def get_performance_stats(self) -> dict[str, Any]: ...

    def pool_usage(self) -> dict[str, dict[str, float]]: ...

    def attach_session_log(self, log: Any) -> None: ...

    def restore_sessions(self, states: Any, partition: Hashable) -> int: ...


EngineFactory = Callable[[Sink], Engine]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    offsets: int
    oldest_timestamp_ms: int | None


class StreamRunner:
    """One consumer-group member. ``run`` returns after a graceful stop."""

    def __init__(self, settings: Settings, engine_factory: EngineFactory,
                 latency_observer: LatencyObserver | None = None) -> None:
        self.settings = settings
        self.counters = EventCounters()
        self.ledger = CommitLedger(self.counters, settings.commit_timeout_seconds)
        self.readiness = Readiness()
        self.engine: Engine | None = None
        self._engine_factory = engine_factory
        self._latency_observer = latency_observer
        self._limits = settings.input_limits
        self._consumer: AIOKafkaConsumer | None = None
        self._sink: KafkaSink | None = None
        self._membership: Membership | None = None
        self._backpressure: Backpressure | None = None
        self._traced = False

    # -- read by the HTTP endpoints and tests -----------------------------------------------

    @property
    def ready(self) -> asyncio.Event:
        return self.readiness.ready

    @property
    def offsets(self) -> OffsetTracker[TopicPartition]:
        return self.ledger.offsets

    @property
    def assignment(self) -> set[TopicPartition]:
        return self._membership.assignment if self._membership is not None else set()

    def _serving(self) -> set[TopicPartition]:
        return self._membership.serving if self._membership is not None else set()

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
            result[tp] = PartitionLag(max(0, highwater - committable),
                                      self.ledger.oldest_timestamp_ms(tp))
        return result

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain, commit and close everything. The engine
        is built before any client connects, so a step the settings get wrong (``SettingsError``)
        ends the member before it reaches the brokers; brokers it cannot reach at start, or
        that refuse its clients, raise ``ClientStartFailed``."""
        self._traced = tracing_on()
        producer = AIOKafkaProducer(**producer_config(self.settings))
        try:
            publisher = Publisher(producer)
            batches = OrderedBatches(producer, publisher,
                                     max_batch_bytes=self.settings.producer_max_batch_bytes)
            changelog = Changelog(self.settings, batches, self.counters,
                                  owned=self._serving) if self.settings.changelog else None
            self._sink = KafkaSink(publisher, batches, self.ledger, self.counters,
                                   response_topic=self.settings.response_topic,
                                   dlq_topic=self.settings.dlq_topic,
                                   latency_observer=self._latency_observer, changelog=changelog)
            self.engine = self._engine_factory(self._sink)
            if changelog is not None:
                self.engine.attach_session_log(changelog)
            log.info("chatstream joining group %r on %s, topic %s", self.settings.group_id,
                     self.settings.kafka_bootstrap_servers, self.settings.inbound_topic)
            consumer = await self._connect(producer, batches, changelog is not None)
            self._consumer = consumer
            self._backpressure = Backpressure(consumer, self.settings.max_buffered, self.counters)
            if self.settings.enable_concurrent_manager and (starving := starving_limit(
                    self.settings.max_buffered, self.settings.max_in_flight)) is not None:
                log.warning(starving)
            self._membership = Membership(consumer, self.engine, self.ledger, self.readiness,
                                          self._backpressure,
                                          self.settings.rebalance_timeout_seconds)
            if changelog is not None:
                engine = self.engine
                self._membership.restore = lambda assigned: changelog.restore_into(engine, assigned)
            consumer.subscribe([self.settings.inbound_topic], listener=self._membership)
            watchdog = asyncio.create_task(self.readiness.watch_broker(
                consumer, stall_s=self.settings.session_timeout_ms / 1000))
            try:
                await self._consume_until(stop)
            finally:
                watchdog.cancel()
                await self._shut_down(consumer)
        finally:
            await _bounded(producer.stop(), _CLIENT_STOP_S, "producer stop")

    async def _connect(self, producer: AIOKafkaProducer, batches: OrderedBatches,
                       copartitioned: bool) -> AIOKafkaConsumer:
        """Start the producer, the engine and the consumer (checking the changelog's partitions
        when there is one); on any failure, stop what had started (the producer is the
        caller's) and raise."""
        assert self.engine is not None
        consumer = AIOKafkaConsumer(**consumer_config(self.settings))
        topic = self.settings.response_topic
        try:
            try:
                await producer.start()
                await batches.prepare([topic])
                await self.engine.start()
                await consumer.start()
            except UnknownTopicOrPartitionError as exc:  # from prepare, after 30 s of metadata
                raise TopicMissing(f"response topic {topic!r} does not exist: create it with "
                                   "`chatstream topics ensure`") from exc
            except TopicAuthorizationFailedError as exc:
                raise ClientStartFailed(f"response topic {topic!r} is not authorized for this "
                                        "client: grant it (the ACLs in docs/deployment.md)") from exc
            except KafkaError as exc:  # unreachable, or refused (idempotence on a broker without)
                raise ClientStartFailed(broker_failure(self.settings, exc)) from exc
            if copartitioned:
                await _check_copartitioned(consumer, self.settings)
        except BaseException:  # refused before joining: nothing to drain or commit
            await self.engine.stop(timeout_s=_ENGINE_GRACE_S)
            await _bounded(consumer.stop(), _CLIENT_STOP_S, "consumer stop")
            raise
        return consumer

    async def _consume_until(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None and self._backpressure is not None
        assert self.engine is not None and self._sink is not None
        next_commit = time.monotonic()
        stop_waiter = asyncio.create_task(stop.wait())
        stuck = _StuckFetch(_STUCK_FETCH_S)
        stop_waiter.add_done_callback(stuck.stopped)
        try:
            while not stop.is_set():
                # Not raced with stop: getmany returns within its wait whatever the broker
                # does, and a task per fetch would cost more than that bounded wait. While the
                # group rebalances it waits for the new assignment instead, unbounded: a stop
                # gives that wait up (``_StuckFetch``).
                taken = await stuck.fetch(take_in_turn(
                    self._consumer, int(_FETCH_WAIT_S * 1000), self.settings.max_poll_records,
                    self._handovers))
                if taken is None:
                    log.warning("stopping: gave up a fetch still waiting after %.1f s, for the "
                                "group's new assignment most likely", stuck.limit_s)
                    break
                await self._take_all(taken)
                self._backpressure.apply(self.engine.buffered + self._sink.in_flight)
                if time.monotonic() >= next_commit:
                    # Raced with stop too: a commit waiting on an absent broker must not delay it.
                    await _unless_stopped(self.commit(), stop_waiter)
                    next_commit = time.monotonic() + self.settings.commit_interval_ms / 1000
        finally:
            stuck.disarm()
            stop_waiter.cancel()

    def _handovers(self) -> int:
        assert self._membership is not None
        return self._membership.handovers

    async def _take_all(self, taken: list[Taken]) -> None:
        """Take the records of one fetch, letting the loop run every few records.

        Events whose steps never wait are answered inside ``_take``; without these pauses a
        full fetch would be answered before any answer's batch is sent or acknowledged (and
        ``getmany`` does not yield while records are buffered). During a pause the group may
        take partitions away (or may have, between ``take_in_turn``'s calls): records still
        in hand of a partition handed over since they were taken are left to the next owner."""
        assert self._membership is not None
        count = 0
        for handovers, tp, records in taken:
            for record in records:
                if self._membership.handovers != handovers \
                        and tp in self._membership.revoked_since(handovers):
                    break
                self._take(RecordSource.from_record(record))
                count += 1
                if count % _RECORDS_BETWEEN_PAUSES == 0:
                    await asyncio.sleep(0)

    def _take(self, source: RecordSource) -> None:
        """Track, decode and submit one record (or hand it to the sink as rejected)."""
        assert self.engine is not None and self._sink is not None
        self.ledger.track(source)
        self.counters.consumed += 1
        try:
            event = decode_event(source.value, self._limits)
        except DecodeError as error:
            span = start_process_span(source, self.settings.group_id, None)
            mark_error(span, error.error_type, error.message)
            self._sink.rejected(source, error, span)
            return
        trace = start_process_span(source, self.settings.group_id, event) if self._traced else None
        self.engine.submit(event, source=source, trace=trace)

    async def commit(self, partitions: Collection[TopicPartition] | None = None,
                     timeout_s: float | None = None) -> None:
        """Commit the watermark of each partition that advanced (all the ledger tracks by
        default), waiting at most ``timeout_s`` (``commit_timeout_seconds`` by default)."""
        if self._consumer is None:
            return
        # Not ``self.assignment``: aiokafka hands out records of new partitions while the
        # assignment callback still runs, before they are in it, and a stop in that window must
        # still commit what they answered. The ledger holds exactly what this member may commit.
        await self.ledger.commit(self._consumer,
                                 self.ledger.partitions() if partitions is None else partitions,
                                 timeout_s)

    async def _shut_down(self, consumer: AIOKafkaConsumer) -> None:
        """Stop fetching, drain within the shutdown timeout, commit, close.

        Every step is bounded, so a stop with the broker away still returns in about the
        shutdown timeout (plus the short grace periods), committing what it can.
        """
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        consumer.pause(*consumer.assignment())
        if self._membership is not None:
            # A restore still running ends here (it may take its consumer a moment to stop),
            # within the shutdown timeout rather than on top of it.
            await self._membership.close()
        assert self.engine is not None and self._sink is not None
        drained = await self.engine.drain(max(0.0, deadline - time.monotonic()))
        # Stop (its short grace period may still complete events) before the final commit,
        # so every acknowledged response counts; then wait for dead letters, including those
        # of events that failed during the grace period.
        await self.engine.stop(timeout_s=_ENGINE_GRACE_S)
        await self._sink.flush(max(_FLUSH_GRACE_S, deadline - time.monotonic()))
        await self._sink.wait_for_dead_letters(max(_DEAD_LETTER_GRACE_S,
                                                   deadline - time.monotonic()))
        await self.commit(timeout_s=max(_COMMIT_GRACE_S, deadline - time.monotonic()))
        if not drained:
            log.warning("shutdown timeout: %d events left unanswered and uncommitted",
                        self.engine.buffered)
        await self._sink.close()
        self.readiness.set_member(False)
        await _bounded(consumer.stop(), max(_CLIENT_STOP_S, deadline - time.monotonic()),
                       "consumer stop")


async def _check_copartitioned(consumer: AIOKafkaConsumer, settings: Settings) -> None:
    """Refuse to start when the changelog cannot hold each inbound partition's sessions in the
    partition of the same number: publishing to a partition that does not exist would be
    retried forever and stall every answer."""
    # The metadata ``consumer.start`` read of every topic that existed then: topics are made
    # before members start (``chatstream topics ensure``).
    inbound = consumer.partitions_for_topic(settings.inbound_topic)
    changelog = consumer.partitions_for_topic(settings.changelog_topic)
    check_copartitioned(settings, len(inbound) if inbound else None,
                        len(changelog) if changelog else None)


class _StuckFetch:
    """Once a stop came, gives up a fetch that has run for ``limit_s``, twice a fetch's own
    bound: only a fetch waiting for the group's new assignment runs that long (a rebalance,
    which with the broker away never ends). The consuming task is cancelled inside the fetch
    only, and the cancellation is taken back there. What that fetch had taken is not tracked
    yet: the partitions' next owner reads it again."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._task: asyncio.Task[Any] | None = None  # the task inside a fetch, if one is
        self._began = 0.0  # loop time that fetch began at
        self._timer: asyncio.TimerHandle | None = None
        self._over = False  # the consuming loop ended
        self._cancelled = False

    def stopped(self, _: asyncio.Future[Any]) -> None:
        self._check()  # also run by the waiter's cancellation, after ``disarm``: then a no-op

    def disarm(self) -> None:
        self._over = True
        if self._timer is not None:
            self._timer.cancel()

    def _check(self) -> None:
        self._timer = None
        if self._over or self._task is None or self._cancelled:
            return  # not inside a fetch: the loop sees the stop before it fetches again
        loop = asyncio.get_running_loop()
        running_s = loop.time() - self._began
        if running_s < self.limit_s:
            self._timer = loop.call_later(self.limit_s - running_s, self._check)
            return
        self._cancelled = True
        self._task.cancel()

    async def fetch(self, step: Coroutine[Any, Any, T]) -> T | None:
        """``step``'s result, or None if it was given up."""
        task = self._task = asyncio.current_task()
        self._began = asyncio.get_running_loop().time()
        try:
            return await step
        except asyncio.CancelledError:
            if self._cancelled and task is not None and task.uncancel() == 0:
                return None  # only ours: what the stop does next must not be cancelled too
            raise
        finally:
            self._task = None


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
