"""Scatter-gather of processors: analysis steps side by side, then compose steps, with per-step
timeout, retry, circuit breaker and degradation (a failed step is named, the event still answered).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic_core import PydanticSerializationError, to_jsonable_python

from processors.base import (
    ExecutionKind,
    Processor,
    Stage,
    TransientProcessorError,
    UpdatesSession,
)
from processors.reply import REPLY_KEY
from processors.resilience import CircuitBreaker, RetryPolicy
from schemas.context import ProcessorContext, SessionUpdate
from schemas.events import ProcessorOutcome, ProcessorStatus

if TYPE_CHECKING:
    from processors.settings import PipelineSettings

log = logging.getLogger(__name__)

PipelineResult = tuple[str | None, dict[str, ProcessorOutcome], list[str]]


class PipelineObserver(Protocol):
    """Tracing hook. Called on the event loop; must not block. Exceptions are logged and ignored."""

    def on_attempt(self, name: str, attempt: int, error: BaseException | None) -> None: ...

    def on_outcome(self, name: str, outcome: ProcessorOutcome) -> None: ...


class NullObserver:
    """The default observer: does nothing."""

    def on_attempt(self, name: str, attempt: int, error: BaseException | None) -> None:
        return None

    def on_outcome(self, name: str, outcome: ProcessorOutcome) -> None:
        return None


@dataclass(slots=True)
class StepStats:
    calls: int = 0
    ok: int = 0
    failures: int = 0
    timeouts: int = 0
    skipped: int = 0
    retries: int = 0


@dataclass(slots=True)
class _Attempts:
    count: int = 0
    open: bool = False  # an attempt started and has not reported to the observer yet


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """Short ``"Type: message"`` text for an outcome."""
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _warm_worker(processor: Processor) -> int:
    # Runs in a worker process: importing the processor's module and building its state there.
    warm_up = getattr(processor, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return os.getpid()


def spawn_process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A process pool started with "spawn": safe next to threads and a running event loop."""
    return ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"))


class ProcessorPipeline:
    """Runs a fixed list of processors for one event at a time (many events concurrently).

    ``run`` never raises for a processor's failure: each step yields a ``ProcessorOutcome``
    (ok / failed / timeout / skipped) and every step not ok is listed in ``degraded``. It raises
    only ``CancelledError`` when itself cancelled. The pipeline owns both pools: ``close()``
    shuts them down. ``process_pool_factory``, when given, replaces a broken process pool (a
    worker died) and the failed attempt is retried as transient. Timed-out THREAD/PROCESS work
    cannot be interrupted: it finishes in its worker and its result is dropped.
    """

    def __init__(
        self,
        processors: Sequence[Processor],
        thread_pool: Executor,
        process_pool: Executor,
        *,
        retry_policy: RetryPolicy | None = None,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        observer: PipelineObserver | None = None,
        process_pool_factory: Callable[[], Executor] | None = None,
    ) -> None:
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"processor names must be unique, got {names}")
        self._analysis = [p for p in processors if p.stage is Stage.ANALYSIS]
        self._compose = [p for p in processors if p.stage is Stage.COMPOSE]
        self._session_writers = [p for p in processors if isinstance(p, UpdatesSession)]
        self._thread_pool = thread_pool
        self._process_pool = process_pool
        self._process_pool_factory = process_pool_factory
        self._retry = retry_policy or RetryPolicy()
        self._clock = clock
        self._observer: PipelineObserver = observer or NullObserver()
        self._breakers = {n: CircuitBreaker(failure_threshold, cooldown_s) for n in names}
        self._stats = {n: StepStats() for n in names}
        # Counted by the pipeline itself: executors do not report how busy they are. Both
        # counters change before the call's future resolves, so an awaited call is never
        # still counted (timed-out work stays counted until it really finishes).
        self._usage_lock = threading.Lock()
        self._threads_running = 0
        self._process_calls_open = 0

    @classmethod
    def from_settings(
        cls,
        processors: Sequence[Processor],
        settings: PipelineSettings,
        *,
        observer: PipelineObserver | None = None,
    ) -> ProcessorPipeline:
        """Pools, retries and breakers as configured (MAX_WORKER_*, CHATSTREAM_PROCESSOR_RETRIES,
        CHATSTREAM_CIRCUIT_*). Starts the worker processes in the background right away (see
        ``warm_up``) so the first events do not pay for process start-up within their timeout."""
        factory = functools.partial(spawn_process_pool, settings.max_worker_processes)
        pipeline = cls(
            processors,
            ThreadPoolExecutor(settings.max_worker_threads, thread_name_prefix="chatstream-step"),
            factory(),
            retry_policy=RetryPolicy(retries=settings.processor_retries),
            failure_threshold=settings.circuit_failure_threshold,
            cooldown_s=settings.circuit_cooldown_seconds,
            observer=observer,
            process_pool_factory=factory,
        )
        pipeline.start_warm_up()
        return pipeline

    async def run(self, context: ProcessorContext) -> PipelineResult:
        """(reply text, outcomes by processor name, degraded names) with retries and breakers."""
        return await self._run(context, resilient=True)

    async def run_basic(self, context: ProcessorContext) -> PipelineResult:
        """The baseline: same shape and per-step timeouts, one attempt each, no breakers."""
        return await self._run(context, resilient=False)

    async def _run(self, context: ProcessorContext, resilient: bool) -> PipelineResult:
        results = await asyncio.gather(
            *(self._step(p, context, resilient) for p in self._analysis)
        )
        outcomes = {p.name: o for p, o in zip(self._analysis, results, strict=True)}
        analysis = {n: o.data for n, o in outcomes.items() if o.status is ProcessorStatus.OK}
        compose_context = replace(context, analysis=analysis)
        reply: str | None = None
        for processor in self._compose:  # in order: a later composer may override the reply
            outcome = await self._step(processor, compose_context, resilient)
            outcomes[processor.name] = outcome
            text = outcome.data.get(REPLY_KEY)
            if outcome.status is ProcessorStatus.OK and isinstance(text, str):
                reply = text
        degraded = [n for n, o in outcomes.items() if o.status is not ProcessorStatus.OK]
        return reply, outcomes, degraded

    def session_update(self, outcomes: dict[str, ProcessorOutcome]) -> SessionUpdate:
        """The merged session updates of the processors that declare one (``UpdatesSession``),
        from their ok outcomes, in processor order."""
        update = SessionUpdate()
        for processor in self._session_writers:
            outcome = outcomes.get(processor.name)
            if outcome is not None and outcome.status is ProcessorStatus.OK:
                update = update.merged(processor.session_update(outcome.data))  # type: ignore[attr-defined]
        return update

    async def _step(
        self, processor: Processor, context: ProcessorContext, resilient: bool
    ) -> ProcessorOutcome:
        stats = self._stats[processor.name]
        breaker = self._breakers[processor.name]
        stats.calls += 1
        if resilient and not breaker.allow(self._clock()):
            outcome = ProcessorOutcome(
                status=ProcessorStatus.SKIPPED, error="circuit open", attempts=0
            )
        else:
            outcome = await self._execute(processor, context, resilient)
            if resilient and outcome.status is ProcessorStatus.OK:
                breaker.record_success(self._clock())
            elif resilient:
                breaker.record_failure(self._clock())
        _count(stats, outcome)
        self._notify("on_outcome", processor.name, outcome)
        return outcome

    async def _execute(
        self, processor: Processor, context: ProcessorContext, resilient: bool
    ) -> ProcessorOutcome:
        started = time.perf_counter()
        attempts = _Attempts()
        deadline = asyncio.timeout(processor.timeout_s)
        status, data, error = ProcessorStatus.OK, {}, None
        try:
            async with deadline:
                if resilient:
                    data = await self._with_retries(processor, context, attempts)
                else:
                    data = await self._attempt(processor, context, attempts)
        except TimeoutError as exc:
            # Only our own deadline is a timeout; a TimeoutError raised by the step is a failure.
            expired = deadline.expired()
            status = ProcessorStatus.TIMEOUT if expired else ProcessorStatus.FAILED
            error = f"timed out after {processor.timeout_s}s" if expired else describe_error(exc)
            if attempts.open:
                self._notify("on_attempt", processor.name, attempts.count, exc)
        except Exception as exc:
            status, error = ProcessorStatus.FAILED, describe_error(exc)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        try:
            return ProcessorOutcome(status=status, data=data, error=error,
                                    attempts=max(attempts.count, 1),
                                    duration_ms=round(elapsed_ms, 3))
        except Exception as exc:  # a step must never fail the whole event
            return ProcessorOutcome(status=ProcessorStatus.FAILED, error=describe_error(exc),
                                    attempts=max(attempts.count, 1),
                                    duration_ms=round(elapsed_ms, 3))

    async def _with_retries(
        self, processor: Processor, context: ProcessorContext, attempts: _Attempts
    ) -> dict[str, Any]:
        async for attempt in self._retry.retrying(processor.timeout_s):
            with attempt:
                return await self._attempt(processor, context, attempts)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self, processor: Processor, context: ProcessorContext, attempts: _Attempts
    ) -> dict[str, Any]:
        attempts.count += 1
        attempts.open = True
        try:
            data = await self._invoke(processor, context)
            if not isinstance(data, dict):
                raise TypeError(f"process() returned {type(data).__name__}, expected dict")
            data = _as_json(data)
        except Exception as exc:
            attempts.open = False
            self._notify("on_attempt", processor.name, attempts.count, exc)
            raise
        attempts.open = False
        self._notify("on_attempt", processor.name, attempts.count, None)
        return data

    async def _invoke(self, processor: Processor, context: ProcessorContext) -> Any:
        if processor.kind is ExecutionKind.ASYNC:
            return await processor.process(context)  # type: ignore[misc]
        if processor.kind is ExecutionKind.THREAD:
            # Copy contextvars so a tracing span started on the loop is current in the thread.
            call = functools.partial(contextvars.copy_context().run, processor.process, context)
            return await asyncio.wrap_future(self._thread_pool.submit(self._counted_thread, call))
        pool = self._process_pool
        slim = getattr(processor, "worker_context", None)  # optional: see processors.base
        if slim is not None:
            context = slim(context)
        try:
            submitted = pool.submit(processor.process, context)
            self._count_process_call(+1)
            submitted.add_done_callback(lambda _: self._count_process_call(-1))
            return await asyncio.wrap_future(submitted)
        except BrokenProcessPool:
            if self._process_pool_factory is None:
                raise
            self._replace_process_pool(pool)
            raise TransientProcessorError("process pool broke (a worker died); replaced") from None

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

    def pool_usage(self) -> dict[str, dict[str, float]]:
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

    def _notify(self, method: str, *args: Any) -> None:
        try:
            getattr(self._observer, method)(*args)
        except Exception:
            log.exception("pipeline observer %s failed", method)

    def start_warm_up(self) -> list[Future[int]]:
        """Submit one warm-up call per process worker for each PROCESS processor: starts the
        workers and lets the processors build their state (e.g. the VADER lexicon) before the
        first event. Does not block; best effort (a worker may get more than one call)."""
        process_kind = [p for p in (*self._analysis, *self._compose) if p.kind is ExecutionKind.PROCESS]
        workers = getattr(self._process_pool, "_max_workers", 1)
        return [
            self._process_pool.submit(_warm_worker, processor)
            for processor in process_kind
            for _ in range(workers)
        ]

    async def warm_up(self) -> set[int]:
        """``start_warm_up`` and wait for it; returns the pids of the workers that answered."""
        futures = [asyncio.wrap_future(f) for f in self.start_warm_up()]
        return set(await asyncio.gather(*futures))

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per processor: calls, ok, failures, timeouts, skipped, retries, breaker, opened_count.
        Many timeouts on one step say raise CHATSTREAM_PROCESSOR_TIMEOUT_SECONDS or the pool size."""
        now = self._clock()
        return {
            name: {
                "calls": s.calls,
                "ok": s.ok,
                "failures": s.failures,
                "timeouts": s.timeouts,
                "skipped": s.skipped,
                "retries": s.retries,
                "breaker": self._breakers[name].state(now).value,
                "opened_count": self._breakers[name].opened_count,
            }
            for name, s in self._stats.items()
        }

    def close(self) -> None:
        """Shut both pools down without waiting for stuck work; queued work is cancelled."""
        self._thread_pool.shutdown(wait=False, cancel_futures=True)
        self._process_pool.shutdown(wait=False, cancel_futures=True)


def _as_json(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it will be published (keys as strings, sets as lists...): checked here so
    that a step returning something JSON cannot hold fails alone, not the event's response."""
    try:
        converted = to_jsonable_python(data)
        orjson.dumps(converted)  # the publishing encoder: it refuses integers beyond 64 bits
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise TypeError(f"process() returned data that is not JSON: {exc}") from None
    return converted  # type: ignore[no-any-return]


def _workers(pool: Executor) -> int:
    return int(getattr(pool, "_max_workers", 0)) or 1


def _usage(workers: int, busy: int, queued: int) -> dict[str, float]:
    return {"workers": workers, "busy": busy, "queued": queued,
            "utilization": round(busy / workers, 4)}


def _count(stats: StepStats, outcome: ProcessorOutcome) -> None:
    stats.retries += max(outcome.attempts - 1, 0)
    if outcome.status is ProcessorStatus.OK:
        stats.ok += 1
    elif outcome.status is ProcessorStatus.TIMEOUT:
        stats.timeouts += 1
    elif outcome.status is ProcessorStatus.SKIPPED:
        stats.skipped += 1
    else:
        stats.failures += 1


__all__ = [
    "NullObserver",
    "PipelineObserver",
    "PipelineResult",
    "ProcessorPipeline",
    "StepStats",
    "describe_error",
    "spawn_process_pool",
]
