"""The concurrent conversation manager: sessions, priority lanes and the processor pipeline.

Admission (``submit``) never blocks: an event joins its session's lane, or, when the session
registry is full of busy sessions, a line of sessions waiting for a slot (``WaitingLine``: the
most urgent first, each session's events kept together and in order). ``buffered``
counts both plus the work in flight; the Kafka runner pauses its partitions when it passes a
bound (backpressure), so memory stays bounded without dropping anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from aiokafka.structs import TopicPartition

from processors.cache import ContextCache, run_cache_cleaner
from processors.pipeline import PipelineResult
from schemas.context import ProcessorContext
from schemas.events import ChatEvent, ProcessorOutcome, ProcessorStatus, ResponseEvent
from stream.records import RecordSource
from stream.scheduler import PriorityScheduler
from stream.sessions import SessionKey, SessionRegistry, SessionState
from stream.settings import Settings
from stream.stats import LatencyWindow, PriorityQueueStats, RateMeter
from stream.tracing import traced
from stream.waiting import WaitingLine
from stream.work import (
    Deliver,
    EngineStopped,
    WorkItem,
    admit,
    build_response,
    fail,
    wait_for_idle,
)

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    async def run(
        self, context: ProcessorContext
    ) -> PipelineResult: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _data(outcomes: dict[str, ProcessorOutcome], name: str) -> dict[str, Any]:
    outcome = outcomes.get(name)
    return outcome.data if outcome is not None and outcome.status is ProcessorStatus.OK else {}


class ConcurrentConversationManager:
    """Serves many conversations at once, urgent ones first, each one strictly in order."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        *,
        deliver: Deliver | None = None,
        cache: ContextCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._deliver = deliver
        self._cache = cache
        self._clock = clock
        self._scheduler: PriorityScheduler[WorkItem] = PriorityScheduler(
            max_in_flight=settings.max_in_flight, aging_seconds=settings.priority_aging_seconds
        )
        self._sessions = SessionRegistry(
            max_sessions=settings.max_concurrent_sessions,
            idle_timeout_s=settings.session_idle_timeout_s,
            history_size=settings.session_history_size,
        )
        self._waiting: WaitingLine[SessionKey, WorkItem] = WaitingLine()
        self._running: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True  # False from the start of stop(): submit refuses new events
        self._closed = False  # True once stop() has drained: nothing new starts
        self._started_at = clock()
        self._latency = LatencyWindow(2048)
        self._rate = RateMeter(window_s=10.0)
        self._queues = PriorityQueueStats()
        self._processed = 0
        self._degraded = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> ConcurrentConversationManager:
        self._background.append(asyncio.create_task(self._expire_sessions_forever()))
        if self._cache is not None:
            interval = min(30.0, max(1.0, self._settings.context_cache_ttl_seconds / 4))
            self._background.append(asyncio.create_task(run_cache_cleaner(self._cache, interval)))
        return self

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is buffered or in flight; False if the timeout passed first."""
        return await wait_for_idle(self._idle, timeout_s)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Drain within the timeout (shutdown_timeout_seconds by default), then cancel the rest.

        Returns within the timeout plus a fraction of a second even when processors are stuck:
        stuck thread or process work is abandoned, not awaited.
        """
        if not self._accepting:
            return
        timeout_s = self._settings.shutdown_timeout_seconds if timeout_s is None else timeout_s
        self._accepting = False
        await self.drain(max(0.0, timeout_s - 0.25))  # queued work keeps starting meanwhile
        self._closed = True
        everything = self._scheduler.remove_queued(lambda _: True) + self._waiting.remove(
            lambda _: True)
        for item in everything:
            fail(item, EngineStopped("engine stopped before the event was processed"))
        for task in [*self._running, *self._background]:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.gather(*self._running, *self._background, return_exceptions=True)
        self._pipeline.close()

    # -- admission ---------------------------------------------------------------------------

    def submit(
        self, event: ChatEvent, source: RecordSource | None = None, trace: Any = None
    ) -> asyncio.Future[ResponseEvent]:
        """Admit one event; the future resolves with its response once delivered."""
        if not self._accepting:
            raise EngineStopped("the engine is stopped")
        now = self._clock()
        item = admit(event, self._settings.session_scope, now, source, trace)
        self._idle.clear()
        # Behind a non-empty waiting line only sessions that already hold a slot may pass,
        # otherwise a later event of a waiting session could overtake its earlier one.
        state = None
        if item.session_key in self._sessions or not self._waiting:
            state = self._sessions.get_or_create(item.session_key, now, self._is_busy)
        if state is None:
            self._waiting.push(item.session_key, item.priority, item)
        else:
            self._enqueue(state, item, now)
            self._pump()
        return item.future

    def _enqueue(self, state: SessionState, item: WorkItem, now: float) -> None:
        if item.source is not None:
            state.partition = item.source.tp
        self._scheduler.push(item.session_key, item.priority, item, now)

    def _admit_waiting(self) -> None:
        """Give free session slots to waiting sessions, the most urgent first (``WaitingLine``)."""
        now = self._clock()
        while (key := self._waiting.peek_session()) is not None:
            state = self._sessions.get_or_create(key, now, self._is_busy)
            if state is None:
                return
            popped = self._waiting.pop_session()
            assert popped is not None
            for item in popped[1]:
                self._enqueue(state, item, now)

    def _is_busy(self, key: SessionKey) -> bool:
        return not self._scheduler.is_idle(key)

    def _pump(self) -> None:
        while (ready := self._scheduler.pop_ready(self._clock())) is not None:
            task = asyncio.create_task(self._run(ready[1]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    # -- processing --------------------------------------------------------------------------

    async def _run(self, item: WorkItem) -> None:
        item.started_at = started = self._clock()
        try:
            state = self._sessions.get(item.session_key)
            if state is None:  # busy sessions are never evicted, so this is a bug, not load
                raise RuntimeError(f"session {item.session_id} vanished while busy")
            context = ProcessorContext(event=item.event, session=state.snapshot())
            with traced(item, started - item.admitted_at):
                reply, outcomes, degraded = await self._pipeline.run(context)
            finished = self._clock()
            response = build_response(
                item, reply, outcomes, degraded,
                queued_ms=(started - item.admitted_at) * 1000,
                processing_ms=(finished - started) * 1000,
            )
            thread = _data(outcomes, "thread")
            state.record(
                item.event, thread_id=thread.get("thread_id"),
                new_thread=bool(thread.get("new_thread")),
                emotion=_data(outcomes, "emotion").get("compound"), now=finished,
            )
            if self._deliver is not None:
                await self._deliver(item, response)
            self._account(item, response)
            if not item.future.done():
                item.future.set_result(response)
        except asyncio.CancelledError:
            item.future.cancel()
            raise
        except Exception as exc:  # the event stays unanswered: its offset is never committed
            fail(item, exc)
            if not isinstance(exc, EngineStopped):
                log.exception("event %s failed", item.event.event_id)
        finally:
            self._scheduler.complete(item.session_key, self._clock())
            self._admit_waiting()
            if not self._closed:
                self._pump()
            if self.buffered == 0:
                self._idle.set()

    def _account(self, item: WorkItem, response: ResponseEvent) -> None:
        now = self._clock()
        self._processed += 1
        self._degraded += bool(response.degraded)
        self._rate.add(now)
        self._latency.add((now - item.admitted_at) * 1000)
        self._queues.record(item.priority, response.queued_ms)

    # -- partitions and sessions -------------------------------------------------------------

    def release_partitions(self, partitions: Collection[TopicPartition]) -> list[WorkItem]:
        """Forget queued work and idle sessions of revoked partitions; return the dropped items.

        Dropped items were never answered, so their offsets stay uncommitted and the partition's
        new owner processes them. In-flight items are left to finish.
        """
        revoked = set(partitions)

        def from_revoked(item: WorkItem) -> bool:
            return item.source is not None and item.source.tp in revoked

        dropped = self._scheduler.remove_queued(from_revoked)
        dropped += self._waiting.remove(from_revoked)
        for item in dropped:
            fail(item, EngineStopped("partition revoked"))

        def of_revoked_and_idle(key: SessionKey) -> bool:
            state = self._sessions.get(key)
            return state is not None and state.partition in revoked and not self._is_busy(key)

        self._sessions.release(of_revoked_and_idle)
        if not self._closed:  # released slots go to events waiting for one
            self._admit_waiting()
            self._pump()
        if self.buffered == 0:
            self._idle.set()
        return dropped

    async def _expire_sessions_forever(self) -> None:
        interval = min(60.0, max(0.5, self._settings.session_idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                self._sessions.expire_idle(self._clock(), self._is_busy)
                if not self._closed:
                    self._admit_waiting()
                    self._pump()
            except Exception:  # keep expiring: one bad pass must not end session expiry
                log.exception("session expiry failed")

    # -- introspection -----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Events admitted and not yet answered (queued, waiting for a session, or in flight)."""
        return self._scheduler.queued + self._scheduler.in_flight + len(self._waiting)

    @property
    def in_flight(self) -> int:
        return self._scheduler.in_flight

    @property
    def sessions(self) -> SessionRegistry:
        return self._sessions

    def get_performance_stats(self) -> dict[str, Any]:
        now = self._clock()
        channels = self._sessions.channels()
        max_sessions = self._sessions.max_sessions
        return {
            "mode": "concurrent",
            "uptime_s": round(now - self._started_at, 3),
            "sessions": {
                "active_sessions": len(self._sessions),
                "max_sessions": max_sessions,
                "utilization": round(len(self._sessions) / max_sessions, 4),
                "waiting_for_slot": len(self._waiting),
            },
            "performance": {
                "messages_per_second": round(self._rate.rate(now), 3),
                "avg_response_time_ms": round(self._latency.mean, 3),
                "p50_response_time_ms": round(self._latency.percentile(50), 3),
                "p95_response_time_ms": round(self._latency.percentile(95), 3),
                "p99_response_time_ms": round(self._latency.percentile(99), 3),
                "total_processed": self._processed,
                "total_degraded": self._degraded,
                "in_flight": self._scheduler.in_flight,
                "buffered": self.buffered,
            },
            "queues": self._queues.snapshot(self._scheduler.depth_by_priority()),
            "channels": {
                "active_channels": len(channels),
                "channel_distribution": {
                    f"{bot}/{channel}": count for (bot, channel), count in channels.most_common(20)
                },
            },
            "cache": self._cache.stats() if self._cache is not None else {},
            "pools": self._pipeline.stats(),
        }

