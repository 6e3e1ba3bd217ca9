"""The basic path: one event at a time per partition, processors gathered, no sessions.

Selected by ENABLE_CONCURRENT_CONVERSATION_MANAGER=false. It is the fallback and the baseline
that benchmarks compare the concurrent manager against. Responses have the same shape; with no
session state, memory and thread tracking see each event as the first of its conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from aiokafka.structs import TopicPartition

from processors.pipeline import PipelineResult
from schemas.context import ProcessorContext, SessionSnapshot
from schemas.events import ChatEvent, ResponseEvent
from stream.records import RecordSource
from stream.settings import Settings
from stream.stats import LatencyWindow, RateMeter
from stream.tracing import traced
from stream.work import (
    Deliver,
    EngineStopped,
    WorkItem,
    admit,
    build_response,
    fail,
    wait_for_idle,
)


class BasicPipeline(Protocol):
    async def run_basic(
        self, context: ProcessorContext
    ) -> PipelineResult: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class BasicEngine:
    """A FIFO and one worker per partition (one shared FIFO for events without a partition)."""

    def __init__(
        self,
        settings: Settings,
        pipeline: BasicPipeline,
        *,
        deliver: Deliver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._deliver = deliver
        self._clock = clock
        self._queues: dict[TopicPartition | None, asyncio.Queue[WorkItem]] = {}
        self._workers: dict[TopicPartition | None, asyncio.Task[None]] = {}
        self._buffered = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._latency = LatencyWindow(2048)
        self._rate = RateMeter(window_s=10.0)
        self._processed = 0
        self._accepting = True

    async def start(self) -> BasicEngine:
        return self

    def submit(
        self, event: ChatEvent, source: RecordSource | None = None, trace: Any = None
    ) -> asyncio.Future[ResponseEvent]:
        if not self._accepting:
            raise EngineStopped("the engine is stopped")
        item = admit(event, self._settings.session_scope, self._clock(), source, trace)
        lane = source.tp if source is not None else None
        if lane not in self._queues:
            self._queues[lane] = asyncio.Queue()
            self._workers[lane] = asyncio.create_task(self._work(self._queues[lane]))
        self._buffered += 1
        self._idle.clear()
        self._queues[lane].put_nowait(item)
        return item.future

    async def _work(self, queue: asyncio.Queue[WorkItem]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._answer(item)
            except asyncio.CancelledError:
                item.future.cancel()
                raise
            except Exception as exc:  # the runner dead-letters it (see StreamRunner._settled)
                fail(item, exc)
            finally:
                self._buffered -= 1
                if self._buffered == 0:
                    self._idle.set()

    async def _answer(self, item: WorkItem) -> None:
        item.started_at = started = self._clock()
        context = ProcessorContext(event=item.event,
                                   session=SessionSnapshot(session_id=item.session_id))
        with traced(item, started - item.admitted_at):
            reply, outcomes, degraded = await self._pipeline.run_basic(context)
        finished = self._clock()
        response = build_response(
            item, reply, outcomes, degraded,
            queued_ms=(started - item.admitted_at) * 1000,
            processing_ms=(finished - started) * 1000,
        )
        if self._deliver is not None:
            await self._deliver(item, response)
        self._processed += 1
        self._rate.add(finished)
        self._latency.add((self._clock() - item.admitted_at) * 1000)
        if not item.future.done():
            item.future.set_result(response)

    @property
    def buffered(self) -> int:
        return self._buffered

    async def drain(self, timeout_s: float) -> bool:
        return await wait_for_idle(self._idle, timeout_s)

    def release_partitions(self, partitions: Collection[TopicPartition]) -> list[WorkItem]:
        dropped: list[WorkItem] = []
        for tp in partitions:
            queue = self._queues.get(tp)
            while queue is not None and not queue.empty():
                item = queue.get_nowait()
                fail(item, EngineStopped("partition revoked"))
                dropped.append(item)
                self._buffered -= 1
        if self._buffered == 0:
            self._idle.set()
        return dropped

    async def stop(self, timeout_s: float | None = None) -> None:
        if not self._accepting:
            return
        self._accepting = False
        timeout_s = self._settings.shutdown_timeout_seconds if timeout_s is None else timeout_s
        await self.drain(max(0.0, timeout_s - 0.25))
        self.release_partitions(list(self._queues))  # fail what is still queued
        for task in self._workers.values():
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._pipeline.close()

    def get_performance_stats(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "mode": "basic",
            "performance": {
                "messages_per_second": round(self._rate.rate(now), 3),
                "avg_response_time_ms": round(self._latency.mean, 3),
                "p95_response_time_ms": round(self._latency.percentile(95), 3),
                "total_processed": self._processed,
                "buffered": self._buffered,
            },
            "pools": self._pipeline.stats(),
        }
