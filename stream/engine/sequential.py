"""The sequential engine: one event at a time per partition, processors gathered, no sessions.

Selected by ENABLE_CONCURRENT_CONVERSATION_MANAGER=false. It is the fallback and the baseline
that benchmarks compare the concurrent manager against. Responses have the same shape; with no
session state, memory and thread tracking see each event as the first of its conversation.
Every event reaches the sink exactly once, as the concurrent engine's do (``answer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Hashable
from typing import Any, Protocol

from processors.pipeline import PipelineResult
from schemas.context import ProcessorContext, SessionSnapshot
from schemas.events import ChatEvent, ResponseEvent
from stream.engine.answer import answer
from stream.engine.sink import Sink, WaiterSink
from stream.engine.work import EngineStopped, WorkItem, admit, wait_for_idle
from stream.observability.stats import ServedStats
from stream.settings import Settings

__all__ = ["BasicEngine", "BasicPipeline"]


class BasicPipeline(Protocol):
    async def run_basic(self, context: ProcessorContext) -> PipelineResult: ...

    def stats(self) -> dict[str, Any]: ...

    def pool_usage(self) -> dict[str, dict[str, float]]: ...

    async def aclose(self) -> None: ...


class BasicEngine:
    """A FIFO and one worker per partition (one shared FIFO for events without a partition)."""

    def __init__(
        self,
        settings: Settings,
        pipeline: BasicPipeline,
        *,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._sink: Sink = sink or WaiterSink()
        self._clock = clock
        self._queues: dict[Hashable, asyncio.Queue[WorkItem]] = {}
        self._workers: dict[Hashable, asyncio.Task[None]] = {}
        self._buffered = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._served = ServedStats(clock())
        self._accepting = True
        self._stopped = asyncio.Event()  # set once the first stop() has ended

    async def start(self) -> BasicEngine:
        return self

    def submit(self, event: ChatEvent, source: Any = None, trace: Any = None,
               waiter: asyncio.Future[ResponseEvent] | None = None) -> WorkItem:
        """Queue one event behind its partition's earlier ones; raises ``EngineStopped`` once
        ``stop`` has begun."""
        if not self._accepting:
            raise EngineStopped("the engine is stopped")
        item = admit(event, self._settings.session_scope, self._clock(), source, trace, waiter)
        lane = item.partition
        if lane not in self._queues:
            self._queues[lane] = asyncio.Queue()
            self._workers[lane] = asyncio.create_task(self._work(self._queues[lane]))
        self._buffered += 1
        self._idle.clear()
        self._queues[lane].put_nowait(item)
        return item

    async def _work(self, queue: asyncio.Queue[WorkItem]) -> None:
        while True:
            item = await queue.get()
            try:
                session = SessionSnapshot(session_id=item.session_id)
                response = await answer(item, session, self._pipeline.run_basic, self._sink,
                                        self._clock)
                if response is not None:
                    self._served.add(item.priority, item.admitted_at, response, self._clock())
            finally:
                self._buffered -= 1
                if self._buffered == 0:
                    self._idle.set()

    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def counters(self) -> Any:
        return self._sink.counters

    async def drain(self, timeout_s: float) -> bool:
        return await wait_for_idle(self._idle, timeout_s)

    def release_partitions(self, partitions: Collection[Hashable]) -> list[WorkItem]:
        """Drop the queued events of ``partitions`` (their sink hears ``EngineStopped``)."""
        dropped: list[WorkItem] = []
        for tp in partitions:
            queue = self._queues.get(tp)
            while queue is not None and not queue.empty():
                item = queue.get_nowait()
                self._sink.failed(item, EngineStopped("partition revoked"))
                dropped.append(item)
                self._buffered -= 1
        if self._buffered == 0:
            self._idle.set()
        return dropped

    async def stop(self, timeout_s: float | None = None) -> None:
        """Drain within the timeout, then fail what is queued; a later call returns once the
        first has ended."""
        if not self._accepting:
            await self._stopped.wait()
            return
        self._accepting = False
        timeout_s = self._settings.shutdown_timeout_seconds if timeout_s is None else timeout_s
        try:
            await self._stop(timeout_s)
        finally:
            self._stopped.set()

    async def _stop(self, timeout_s: float) -> None:
        await self.drain(max(0.0, timeout_s - 0.25))
        self.release_partitions(list(self._queues))  # fail what is still queued
        for task in self._workers.values():
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._pipeline.aclose()

    def attach_session_log(self, log: Any) -> None:
        """No sessions here: nothing to log."""

    def restore_sessions(self, states: Any, partition: Hashable) -> int:
        """No sessions here: nothing is restored."""
        return 0

    def pool_usage(self) -> dict[str, dict[str, float]]:
        return self._pipeline.pool_usage()

    def get_performance_stats(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "mode": "basic",
            "performance": {**self._served.performance(now, self._sink.counters),
                            "buffered": self._buffered},
            "pools": self._pipeline.stats(),
        }
