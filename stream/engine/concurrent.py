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
import functools
import inspect
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Hashable, Iterable
from typing import Any, Protocol

from processors.cache import ContextCache, run_cache_cleaner
from processors.eager import start_eagerly
from processors.pipeline import PipelineResult
from schemas.context import ProcessorContext, SessionUpdate
from schemas.events import ChatEvent, ProcessorOutcome, ResponseEvent
from stream.engine.answer import answer
from stream.engine.scheduler import PriorityScheduler
from stream.engine.session_documents import session_records
from stream.engine.sessions import SessionKey, SessionRegistry, SessionState
from stream.engine.sink import SessionLog, Sink, WaiterSink
from stream.engine.waiting import WaitingLine
from stream.engine.work import EngineStopped, WorkItem, admit, wait_for_idle
from stream.observability.stats import ServedStats
from stream.settings import Settings

__all__ = ["ConcurrentConversationManager", "Pipeline"]

log = logging.getLogger(__name__)

# Items one task serves in turn before it ends and leaves the rest to new tasks: items that
# finish without waiting then still let the loop run (fetch, publish) every few of them.
_ITEMS_PER_TASK = 32


class Pipeline(Protocol):
    async def run(self, context: ProcessorContext) -> PipelineResult: ...

    def session_update(self, outcomes: dict[str, ProcessorOutcome]) -> SessionUpdate: ...

    def stats(self) -> dict[str, Any]: ...

    def pool_usage(self) -> dict[str, dict[str, float]]: ...

    async def aclose(self) -> None: ...


class ConcurrentConversationManager:
    """Serves many conversations at once, urgent ones first, each one strictly in order."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        *,
        sink: Sink | None = None,
        cache: ContextCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._sink: Sink = sink or WaiterSink()
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
        # Tasks whose ``_serve`` has begun: one cancelled before its first step never runs its
        # body, so its done callback must end its item (``_served_by``).
        self._begun: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True  # False from the start of stop(): submit refuses new events
        self._closed = False  # True once stop() has drained: nothing new starts
        self._stopped = asyncio.Event()  # set once the first stop() has ended
        self._served = ServedStats(clock())
        self._session_log: SessionLog | None = None
        self._pumping = False
        # Eagerly only where no step can suspend: a step that suspends must start in the task
        # that goes on with it (a deadline or a cancel scope binds to the current task).
        self._eager = getattr(pipeline, "never_waits", False) is True

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
        stuck thread or process work is abandoned, not awaited. A later call returns once the
        first has ended.
        """
        if not self._accepting:
            await self._stopped.wait()
            return
        timeout_s = self._settings.shutdown_timeout_seconds if timeout_s is None else timeout_s
        self._accepting = False
        try:
            await self._stop(timeout_s)
        finally:
            self._stopped.set()

    async def _stop(self, timeout_s: float) -> None:
        await self.drain(max(0.0, timeout_s - 0.25))  # queued work keeps starting meanwhile
        self._closed = True
        everything = self._scheduler.remove_queued(lambda _: True) + self._waiting.remove(
            lambda _: True)
        for item in everything:
            self._sink.failed(item, EngineStopped("engine stopped before the event was processed"))
        for task in [*self._running, *self._background]:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.gather(*self._running, *self._background, return_exceptions=True)
        await self._pipeline.aclose()

    # -- admission ---------------------------------------------------------------------------

    def submit(self, event: ChatEvent, source: Any = None, trace: Any = None,
               waiter: asyncio.Future[ResponseEvent] | None = None) -> WorkItem:
        """Admit one event; the sink hears of it once it is answered or failed.

        Raises ``EngineStopped`` once ``stop`` has begun."""
        if not self._accepting:
            raise EngineStopped("the engine is stopped")
        now = self._clock()
        item = admit(event, self._settings.session_scope, now, source, trace, waiter)
        self._idle.clear()
        # Behind a non-empty waiting line only sessions that already hold a slot may pass,
        # otherwise a later event of a waiting session could overtake its earlier one.
        state = None
        if item.session_key in self._sessions or not self._waiting:
            state = self._sessions.get_or_create(item.session_key, now, self._is_busy)
        if state is None:
            self._waiting.push(item.session_key, item.priority, item)
        elif not self._pumping and self._scheduler.start_now(item.session_key):
            self._place(state, item)
            self._pump(started=item)
        else:
            self._enqueue(state, item, now)
            self._pump()
        return item

    def _enqueue(self, state: SessionState, item: WorkItem, now: float) -> None:
        self._place(state, item)
        self._scheduler.push(item.session_key, item.priority, item, now)

    @staticmethod
    def _place(state: SessionState, item: WorkItem) -> None:
        if item.partition is not None:
            state.partition = item.partition

    def _admit_waiting(self) -> None:
        """Give free session slots to waiting sessions, the most urgent first (``WaitingLine``)."""
        if not self._waiting:  # the usual case, on every event's end: not even a clock read
            return
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

    def _pump(self, started: WorkItem | None = None) -> None:
        """Start ``started`` (an item the scheduler already marked in flight), then every event
        the scheduler lets go: as a task, or, when no step of the pipeline can suspend
        (``never_waits``), at once on this stack (``start_eagerly``), so the event is answered
        here. An event finishing inside this loop calls ``_pump`` again; that call returns and
        this loop goes on, so the stack never deepens."""
        if self._pumping:
            return
        self._pumping = True
        try:
            if started is not None:
                self._start(started)
            while (ready := self._scheduler.pop_ready(self._clock())) is not None:
                self._start(ready[1])
        finally:
            self._pumping = False

    def _start(self, item: WorkItem) -> None:
        """Run an item the scheduler marked in flight: on this stack or as a task."""
        run = self._run(item) if self._eager else self._serve(item)
        try:
            task = start_eagerly(run) if self._eager else asyncio.create_task(run)
        except Exception as error:  # _run and _serve route every failure to the sink: a bug
            log.exception("event %s could not be run", item.event.event_id)
            state = inspect.getcoroutinestate(run)
            if state == inspect.CORO_CLOSED:
                return  # it ran to its end: it told the sink and freed its lane itself
            # It never ran, or stopped at its first wait with no task to go on: nothing told
            # the sink. Closing a suspended one runs its clean-up (``_finished``) at once.
            run.close()
            try:
                self._sink.failed(item, error)  # dead-lettered, or left to the next owner
            finally:
                if state == inspect.CORO_CREATED:
                    self._finished(item)
            return
        if task is not None:
            self._running.add(task)
            task.add_done_callback(functools.partial(self._ran, item, run) if self._eager
                                   else functools.partial(self._served_by, item))

    def _ran(self, item: WorkItem, run: Coroutine[Any, Any, None],
             task: asyncio.Task[None]) -> None:
        """The done callback of the task that went on with an item started on a caller's
        stack."""
        self._running.discard(task)
        if inspect.getcoroutinestate(run) != inspect.CORO_CLOSED:
            # Cancelled before its first step, the task never resumed the item: nothing told
            # the sink. Closing the item runs its clean-up (which frees its lane) before the
            # sink ends its span.
            try:
                run.close()
            finally:
                self._sink.failed(item, asyncio.CancelledError())

    def _served_by(self, item: WorkItem, task: asyncio.Task[None]) -> None:
        """The done callback of a task started with ``item``."""
        self._running.discard(task)
        if task in self._begun:
            self._begun.discard(task)
        else:  # cancelled before its first step: nothing told the sink, the lane is held
            try:
                self._sink.failed(item, asyncio.CancelledError())
            finally:
                self._finished(item)

    # -- processing --------------------------------------------------------------------------

    async def _serve(self, item: WorkItem) -> None:
        """A task's work: ``item``, then, as long as the scheduler has one ready, the next item
        it lets go, up to ``_ITEMS_PER_TASK`` in all. The scheduler still decides what runs
        when; reusing the task spares each later item a task of its own (its creation, a trip
        through the loop's ready queue and a done callback). It stops taking items once the
        task is being cancelled (a cancellation meant for one item must not reach the next)
        or the engine is closing. The items of one task see the context variables it
        inherited, as every task started from it would."""
        task = asyncio.current_task()
        assert task is not None
        self._begun.add(task)
        following: WorkItem | None = item
        served = 0
        while following is not None:
            item = following
            try:
                if (step := self._answer(item)) is not None:
                    await step
            except BaseException:
                self._finished(item)
                raise
            served += 1
            take_next = served < _ITEMS_PER_TASK and not task.cancelling()
            following = self._finished(item, take_next=take_next)

    async def _run(self, item: WorkItem) -> None:
        """One item, started on the caller's stack (``start_eagerly``)."""
        try:
            if (step := self._answer(item)) is not None:
                await step
        finally:
            self._finished(item)

    def _answer(self, item: WorkItem) -> Coroutine[Any, Any, ResponseEvent | None] | None:
        """What answers ``item`` (``answer``), for the caller to await itself: one coroutine
        less in the chain that every wake-up of a waiting step resumes. None when the item
        ended here (its session is gone, or could not be read)."""
        state = self._sessions.get(item.session_key)
        if state is None:
            # Busy sessions are never evicted, only handed over with their partition: an item
            # let go but not yet begun when that happened is the next owner's.
            self._sink.failed(item, EngineStopped("partition revoked") if item.partition
                              is not None else RuntimeError(f"session {item.session_id} vanished"))
            return None
        try:
            snapshot = state.snapshot()
        except Exception as error:  # a bug too; the sink must still hear of the event
            log.exception("session %s of event %s could not be read", item.session_id,
                          item.event.event_id)
            self._sink.failed(item, error)
            return None

        def record(response: ResponseEvent, now: float) -> None:
            update = self._pipeline.session_update(response.analysis)
            state.record(item.event, thread_id=update.thread_id,
                         new_thread=update.new_thread, emotion=update.emotion, now=now)
            if self._session_log is not None:
                item.session_state = session_records(state)
            self._served.add(item.priority, item.admitted_at, response, now)

        return answer(item, snapshot, self._pipeline.run, self._sink, self._clock, record)

    def _finished(self, item: WorkItem, take_next: bool = False) -> WorkItem | None:
        """``item`` is over: its session's lane is free, waiting sessions get free slots, and
        what may run now starts. With ``take_next``, the first item the scheduler lets go is
        returned instead, for the caller to run (None when there is none)."""
        now = self._clock()
        self._scheduler.complete(item.session_key, now)
        # Only a session left with nothing to do frees a slot: while sessions wait, every other
        # one is busy, and asking the registry would walk them all on every event's end.
        if self._waiting and self._scheduler.is_idle(item.session_key):
            self._admit_waiting()
        following = None
        if not self._closed:
            if take_next and (ready := self._scheduler.pop_ready(now)) is not None:
                following = ready[1]
            self._pump()
        if self.buffered == 0:
            self._idle.set()
        return following

    # -- partitions and sessions -------------------------------------------------------------

    def attach_session_log(self, log: SessionLog) -> None:
        """From now on each answered item carries its session's document
        (``item.session_state``) and each session that ends for good is reported to ``log``."""
        self._session_log = log
        self._sessions.on_dropped = log.dropped

    def restore_sessions(self, states: Iterable[SessionState], partition: Hashable) -> int:
        """Install sessions restored from the changelog for ``partition`` before any of its
        events is admitted, into free session slots, in the order given; a session already
        live is kept. Returns how many were installed."""
        now = self._clock()
        installed = 0
        for state in states:
            state.partition = partition
            installed += self._sessions.restore(state, now)
        return installed

    def release_partitions(self, partitions: Collection[Hashable]) -> list[WorkItem]:
        """Forget queued work and the sessions of revoked partitions; return the dropped items.

        Dropped items were never answered, so their offsets stay uncommitted and the partition's
        new owner processes them. In-flight items are left to finish, but their sessions leave
        now too, busy or not: what a late item records goes to a copy no one keeps (it cannot
        be published either), so a session restored when the partition comes back is the new
        owner's, not one that also holds an event the new owner answers again.
        """
        revoked = set(partitions)

        def from_revoked(item: WorkItem) -> bool:
            return item.partition is not None and item.partition in revoked

        dropped = self._scheduler.remove_queued(from_revoked)
        dropped += self._waiting.remove(from_revoked)
        for item in dropped:
            self._sink.failed(item, EngineStopped("partition revoked"))

        def of_revoked(key: SessionKey) -> bool:
            state = self._sessions.get(key)
            return state is not None and state.partition in revoked

        self._sessions.release(of_revoked)
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

    @property
    def counters(self) -> Any:
        return self._sink.counters

    def pool_usage(self) -> dict[str, dict[str, float]]:
        """Workers, busy, queued and utilization of the pipeline's pools."""
        return self._pipeline.pool_usage()

    def get_performance_stats(self) -> dict[str, Any]:
        now = self._clock()
        channels = self._sessions.channels()
        max_sessions = self._sessions.max_sessions
        return {
            "mode": "concurrent",
            "uptime_s": self._served.uptime(now),
            "sessions": {
                "active_sessions": len(self._sessions),
                "max_sessions": max_sessions,
                "utilization": round(len(self._sessions) / max_sessions, 4),
                "waiting_for_slot": len(self._waiting),
            },
            "performance": {
                **self._served.performance(now, self._sink.counters),
                "in_flight": self._scheduler.in_flight,
                "buffered": self.buffered,
            },
            "queues": self._served.queues(self._scheduler.depth_by_priority()),
            "channels": {
                "active_channels": len(channels),
                "channel_distribution": {
                    f"{bot}/{channel}": count for (bot, channel), count in channels.most_common(20)
                },
            },
            "cache": self._cache.stats() if self._cache is not None else {},
            "pools": self._pipeline.stats(),
        }
