"""The worker pools of a pipeline: threads for blocking steps, processes for CPU steps.

The pools count their own use (executors do not report how busy they are): both counters change
before a call's future resolves, so an awaited call is never still counted, and timed-out work
stays counted until it really finishes. Timed-out thread or process work cannot be
interrupted: it finishes in its worker and its result is dropped.

A broken process pool (a worker died) fails every call in flight in it, and which one killed
the worker is not known. The pool is replaced by a new one from the factory, and each of those
calls runs again *alone*: one at a time, in an isolation pool of its own. A call whose worker
dies there too is the one that kills workers: it fails with ``WorkerKilled`` (not retried), and
the others' answers stand. So one poisonous event breaks the shared pool once, not once per
attempt, and the events beside it keep their steps. Without an isolation pool factory a call
in flight at the break fails with ``TransientProcessorError`` for the pipeline to retry.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from processors.base import Processor, TransientProcessorError
from schemas.context import ProcessorContext

__all__ = ["WorkerKilled", "WorkerPools", "spawn_process_pool"]

log = logging.getLogger(__name__)


def spawn_process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A process pool of fresh interpreters that never run ``__main__``, safe next to threads and
    a running event loop, warmed up and loud about a worker's death: see ``processors.pool``."""
    from processors.pool import process_pool

    return process_pool(max_workers)


def _warm_worker(processor: Processor) -> int:
    # Runs in a worker process: importing the processor's module and building its state there.
    warm_up = getattr(processor, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return os.getpid()


class WorkerKilled(RuntimeError):
    """A step's worker process died running this call, and again when it ran alone."""


class WorkerPools:
    def __init__(self, thread_pool: Executor, process_pool: Executor,
                 process_pool_factory: Callable[[], Executor] | None = None,
                 isolation_pool_factory: Callable[[], Executor] | None = None) -> None:
        self._thread_pool = thread_pool
        self._process_pool = process_pool
        self._process_pool_factory = process_pool_factory
        self._isolation_pool_factory = isolation_pool_factory
        self._isolation_pool: Executor | None = None  # made at the first break
        self._alone = asyncio.Lock()
        self._usage_lock = threading.Lock()
        self._threads_running = 0
        self._process_calls_open = 0

    async def in_thread(self, processor: Processor, context: ProcessorContext) -> Any:
        # Copy contextvars so a tracing span started on the loop is current in the thread.
        call = functools.partial(contextvars.copy_context().run, processor.process, context)
        return await asyncio.wrap_future(self._thread_pool.submit(self._counted_thread, call))

    async def in_process(self, processor: Processor, context: ProcessorContext) -> Any:
        pool = self._process_pool
        slim = getattr(processor, "worker_context", None)  # optional: see processors.base
        if slim is not None:
            context = slim(context)
        try:
            return await self._submitted(pool, processor, context)
        except BrokenProcessPool:
            if self._process_pool_factory is None:
                raise
            self._replace_process_pool(pool)
            if self._isolation_pool_factory is None:
                raise TransientProcessorError(
                    "process pool broke (a worker died); replaced") from None
        return await self._run_alone(processor, context)

    async def _submitted(self, pool: Executor, processor: Processor,
                         context: ProcessorContext) -> Any:
        submitted = pool.submit(processor.process, context)
        self._count_process_call(+1)
        submitted.add_done_callback(lambda _: self._count_process_call(-1))
        return await asyncio.wrap_future(submitted)

    async def _run_alone(self, processor: Processor, context: ProcessorContext) -> Any:
        """Run a call that was in flight when its pool broke, with nothing else in flight in
        the isolation pool: if its worker dies now, this call is the one that kills them."""
        assert self._isolation_pool_factory is not None
        async with self._alone:
            if self._isolation_pool is None:
                self._isolation_pool = self._isolation_pool_factory()
            pool = self._isolation_pool
            try:
                return await self._submitted(pool, processor, context)
            except BrokenProcessPool:
                self._isolation_pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                log.error("%s: a worker died running this call, and again running it alone: "
                          "the call fails, not retried", processor.name)
                raise WorkerKilled(
                    f"{processor.name}: its worker process died running this event, twice "
                    "(the second time alone): not retried") from None

    def _counted_thread(self, call: Callable[[], Any]) -> Any:
        with self._usage_lock:
            self._threads_running += 1
        try:
            return call()
        finally:
            with self._usage_lock:
                self._threads_running -= 1

    def _count_process_call(self, delta: int) -> None:
        with self._usage_lock:
            self._process_calls_open += delta

    def usage(self) -> dict[str, dict[str, float]]:
        """Per pool: workers, busy, queued and utilization (busy / workers).

        Threads: busy = calls running in a pool thread, queued = calls waiting for one.
        Processes: calls submitted and not finished, the first ``workers`` of them counted busy.
        """
        threads = _workers(self._thread_pool)
        processes = _workers(self._process_pool)
        with self._usage_lock:
            running, open_calls = self._threads_running, self._process_calls_open
        queue = getattr(self._thread_pool, "_work_queue", None)  # private: no public accessor
        return {
            "thread": _usage(threads, running, queue.qsize() if queue is not None else 0),
            "process": _usage(processes, min(open_calls, processes),
                              max(0, open_calls - processes)),
        }

    def _replace_process_pool(self, broken: Executor) -> None:
        if self._process_pool is broken and self._process_pool_factory is not None:
            log.warning("process pool broken; starting a new one")
            broken.shutdown(wait=False, cancel_futures=True)
            self._process_pool = self._process_pool_factory()

    def start_warm_up(self, processors: list[Processor]) -> list[Future[int]]:
        """Submit one warm-up call per process worker for each of ``processors``: starts the
        workers and lets the processors build their state (e.g. the VADER lexicon) before the
        first event. Does not block; best effort (a worker may get more than one call)."""
        workers = getattr(self._process_pool, "_max_workers", 1)
        return [self._process_pool.submit(_warm_worker, processor)
                for processor in processors for _ in range(workers)]

    def close(self) -> None:
        """Shut both pools down without waiting for stuck work; queued work is cancelled."""
        self._thread_pool.shutdown(wait=False, cancel_futures=True)
        self._process_pool.shutdown(wait=False, cancel_futures=True)
        if self._isolation_pool is not None:
            self._isolation_pool.shutdown(wait=False, cancel_futures=True)


def _workers(pool: Executor) -> int:
    return int(getattr(pool, "_max_workers", 0)) or 1


def _usage(workers: int, busy: int, queued: int) -> dict[str, float]:
    return {"workers": workers, "busy": busy, "queued": queued,
            "utilization": round(busy / workers, 4)}
