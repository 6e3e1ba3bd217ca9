"""Scatter-gather of processors: analysis steps side by side, then compose steps, with per-step
timeout, retry, circuit breaker and degradation (a failed step is named, the event still answered).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from processors.base import (
    ExecutionKind,
    Processor,
    Stage,
    TransientProcessorError,
    UpdatesSession,
)
from processors.deadline import Deadline, within
from processors.eager import Resumed
from processors.observers import NullObserver, PipelineObserver
from processors.outcomes import StepStats, as_json, describe_error
from processors.reply import REPLY_KEY
from processors.resilience import BreakerState, CircuitBreaker, RetryPolicy
from processors.workers import WorkerPools, spawn_process_pool
from schemas.context import ProcessorContext, SessionUpdate
from schemas.events import ProcessorOutcome, ProcessorStatus, to_microsecond
from schemas.trusted import trusted

if TYPE_CHECKING:
    from processors.settings import PipelineSettings

log = logging.getLogger(__name__)

_NO_UPDATE = SessionUpdate()  # frozen: one shared instance for events that change nothing

PipelineResult = tuple[str | None, dict[str, ProcessorOutcome], list[str]]


@dataclass(slots=True)
class _Attempts:
    count: int = 0
    open: bool = False  # an attempt started and has not reported to the observer yet


@dataclass(slots=True)
class _Suspended:
    """An ASYNC step's first attempt, run up to its first suspension."""

    step: Coroutine[Any, Any, Any]
    first: Any  # what it suspended on
    started: float


@dataclass(slots=True)
class _Failed:
    """An INLINE or ASYNC step's first attempt, failed with a transient error to retry."""

    error: Exception
    started: float


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    return await awaitable  # an awaitable that is not a native coroutine, as a coroutine


def _time_left(processor: Processor, started: float) -> float:
    """What is left of ``processor``'s timeout since ``started`` (``time.perf_counter``)."""
    return max(0.0, processor.timeout_s - (time.perf_counter() - started))


def _outcome(status: ProcessorStatus, data: dict[str, Any], error: str | None, attempts: int,
             started: float) -> ProcessorOutcome:
    # Built unvalidated: every field comes from the pipeline, and ``data`` is a JSON-checked
    # dict (``as_json``), so validation would only cost time on every step.
    return trusted(ProcessorOutcome, {
        "status": status, "data": data, "error": error, "attempts": attempts,
        "duration_ms": to_microsecond((time.perf_counter() - started) * 1000.0)})


class ProcessorPipeline:
    """Runs a fixed list of processors for one event at a time (many events concurrently).

    ``run`` never raises for a processor's failure: each step yields a ``ProcessorOutcome``
    (ok / failed / timeout / skipped) and every step not ok is listed in ``degraded``. It raises
    only ``CancelledError`` when itself cancelled. The pipeline owns both pools: ``close()``
    shuts them down. ``process_pool_factory``, when given, replaces a broken process pool (a
    worker died); the calls in flight in it run again one at a time in a pool from
    ``isolation_pool_factory``, or, without one, are retried as transient (see
    ``processors.workers``). Timed-out THREAD/PROCESS work cannot be interrupted: it finishes
    in its worker and its result is dropped.
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
        isolation_pool_factory: Callable[[], Executor] | None = None,
    ) -> None:
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"processor names must be unique, got {names}")
        self._analysis = [p for p in processors if p.stage is Stage.ANALYSIS]
        self._compose = [p for p in processors if p.stage is Stage.COMPOSE]
        self._session_writers = [p for p in processors if isinstance(p, UpdatesSession)]
        self._inline_analysis = [p for p in self._analysis if p.kind is ExecutionKind.INLINE]
        self._waiting_analysis = [p for p in self._analysis if p.kind is not ExecutionKind.INLINE]
        # No step can suspend: an event may run on its caller's stack (see ExecutionKind).
        self.never_waits = all(
            p.kind is ExecutionKind.INLINE
            or (p.kind is ExecutionKind.ASYNC and getattr(p, "never_waits", False) is True)
            for p in processors)
        self._pools = WorkerPools(thread_pool, process_pool, process_pool_factory,
                                  isolation_pool_factory)
        self._retry = retry_policy or RetryPolicy()
        self._clock = clock
        # None when nothing observes: the per-step path then makes no observer calls at all.
        self._observer: PipelineObserver | None = (
            None if observer is None or isinstance(observer, NullObserver) else observer)
        self._breakers = {n: CircuitBreaker(failure_threshold, cooldown_s) for n in names}
        self._stats = {n: StepStats() for n in names}

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
            isolation_pool_factory=functools.partial(spawn_process_pool, 1),
        )
        pipeline.start_warm_up()
        return pipeline

    async def run(self, context: ProcessorContext, resilient: bool = True) -> PipelineResult:
        """(reply text, outcomes by processor name, degraded names) with retries and breakers
        (``resilient``; see ``run_basic``)."""
        analysis_steps, waiting = self._analysis, self._waiting_analysis
        if len(waiting) > 1:
            # Steps that wait (async, thread, process) side by side; inline ones meanwhile
            # run on the loop one after another anyway, so they get no task of their own.
            gathered = asyncio.gather(*(self._step(p, context, resilient) for p in waiting))
            try:
                found = {p.name: await self._step(p, context, resilient)
                         for p in self._inline_analysis}
            except BaseException:  # cancelled during an inline step's retry: so are the others
                gathered.cancel()
                # No one awaits it now: what it ends with is read here, or asyncio logs it.
                gathered.add_done_callback(_read_outcome)
                raise
            found.update(zip((p.name for p in waiting), await gathered, strict=True))
            outcomes = {p.name: found[p.name] for p in analysis_steps}
        else:  # at most one step waits: no gather, no task per step
            outcomes = {}
            for processor in analysis_steps:
                outcome = self._try_step(processor, context, resilient)
                if not isinstance(outcome, ProcessorOutcome):
                    outcome = await self._finish_step(processor, context, resilient, outcome)
                outcomes[processor.name] = outcome
        analysis = {n: o.data for n, o in outcomes.items() if o.status is ProcessorStatus.OK}
        # Built directly: dataclasses.replace walks the fields on every event. Without
        # analysis the composers see the context as it came.
        compose_context = context if not analysis and not context.analysis else \
            ProcessorContext(event=context.event, session=context.session, analysis=analysis)
        reply: str | None = None
        for processor in self._compose:  # in order: a later composer may override the reply
            outcome = self._try_step(processor, compose_context, resilient)
            if not isinstance(outcome, ProcessorOutcome):
                outcome = await self._finish_step(processor, compose_context, resilient, outcome)
            outcomes[processor.name] = outcome
            text = outcome.data.get(REPLY_KEY)
            if outcome.status is ProcessorStatus.OK and isinstance(text, str):
                reply = text
        degraded = [n for n, o in outcomes.items() if o.status is not ProcessorStatus.OK]
        return reply, outcomes, degraded

    async def run_basic(self, context: ProcessorContext) -> PipelineResult:
        """The baseline: same shape and per-step timeouts, one attempt each, no breakers."""
        return await self.run(context, resilient=False)

    def session_update(self, outcomes: dict[str, ProcessorOutcome]) -> SessionUpdate:
        """The merged session updates of the processors that declare one (``UpdatesSession``),
        from their ok outcomes, in processor order."""
        update = _NO_UPDATE
        for processor in self._session_writers:
            outcome = outcomes.get(processor.name)
            if outcome is not None and outcome.status is ProcessorStatus.OK:
                update = update.merged(processor.session_update(outcome.data))  # type: ignore[attr-defined]
        return update

    async def _step(
        self, processor: Processor, context: ProcessorContext, resilient: bool
    ) -> ProcessorOutcome:
        outcome = self._try_step(processor, context, resilient)
        if isinstance(outcome, ProcessorOutcome):
            return outcome
        return await self._finish_step(processor, context, resilient, outcome)

    def _try_step(self, processor: Processor, context: ProcessorContext, resilient: bool
                  ) -> ProcessorOutcome | _Suspended | _Failed | None:
        """The step's outcome, counted and reported, when it is known without waiting: its
        breaker is open, or an INLINE or ASYNC step's first attempt ended. Otherwise what
        ``_finish_step`` goes on from (see ``_first_attempt``; None: nothing ran yet)."""
        self._stats[processor.name].calls += 1
        breaker = self._breakers[processor.name]
        # A quiet breaker (closed, no failure streak) allows every call and ignores a success:
        # the clock is read only when the breaker has something to decide.
        if resilient and not breaker.quiet and not breaker.allow(self._clock()):
            return self._settled(processor, ProcessorOutcome(
                status=ProcessorStatus.SKIPPED, error="circuit open", attempts=0), None)
        kind = processor.kind
        if kind is not ExecutionKind.INLINE and kind is not ExecutionKind.ASYNC:
            return None
        found = self._first_attempt(processor, context, resilient)
        if isinstance(found, ProcessorOutcome):
            return self._settled(processor, found, breaker if resilient else None)
        return found

    def _settled(self, processor: Processor, outcome: ProcessorOutcome,
                 breaker: CircuitBreaker | None) -> ProcessorOutcome:
        """``outcome`` told to the step's ``breaker`` (None: not judged), counted, observed."""
        if breaker is not None:
            if outcome.status is not ProcessorStatus.OK:
                opened = breaker.opened_count
                breaker.record_failure(self._clock())
                if breaker.opened_count != opened:  # a step skipped for everyone: say so once
                    log.warning("step %s failed %d times in a row (last: %s): its calls are "
                                "skipped for %.0f s, then one is tried", processor.name,
                                breaker.consecutive_failures, outcome.error, breaker.cooldown_s)
            elif not breaker.quiet:
                now = self._clock()
                reopened = breaker.state(now) is BreakerState.HALF_OPEN
                breaker.record_success(now)
                if reopened and breaker.quiet:
                    log.warning("step %s succeeded again: its calls run again", processor.name)
        self._stats[processor.name].count(outcome)
        if self._observer is not None:
            self._notify("on_outcome", processor.name, outcome)
        return outcome

    def _first_attempt(self, processor: Processor, context: ProcessorContext,
                       resilient: bool) -> ProcessorOutcome | _Suspended | _Failed:
        """An INLINE or ASYNC step's first attempt, run here with no coroutine of the
        pipeline's own and no deadline: its outcome when it ended without suspending (an
        INLINE step always does: it runs to its end on the loop whatever a deadline says), the
        suspended step for ``_finish_step`` to await under its deadline, or the transient error
        that ``_finish_step`` retries."""
        started = time.perf_counter()
        attempts = _Attempts(1, True)
        status, data, error = ProcessorStatus.OK, {}, None
        try:
            if processor.kind is ExecutionKind.INLINE:
                found = processor.process(context)
            else:
                awaitable = processor.process(context)
                step = awaitable if inspect.iscoroutine(awaitable) \
                    else _awaiting(awaitable)  # type: ignore[arg-type]
                try:
                    suspended_on = step.send(None)
                except StopIteration as done:
                    found = done.value
                else:
                    return _Suspended(step, suspended_on, started)
            data = self._checked(processor, found, attempts)
        except Exception as exc:
            if resilient and self._retry.retries >= 1 and isinstance(
                    exc, TransientProcessorError):
                return _Failed(exc, started)
            if attempts.open:
                self._attempt_failed(processor.name, attempts.count, exc)
            status, error = ProcessorStatus.FAILED, describe_error(exc)
        return _outcome(status, data, error, 1, started)

    async def _finish_step(
        self, processor: Processor, context: ProcessorContext, resilient: bool,
        begun: _Suspended | _Failed | None,
    ) -> ProcessorOutcome:
        """The step's outcome, counted and reported (``_settled``), from its first attempt (or
        from what ``begun`` of it: the outcome's duration and the retries' time budget count
        from its start)."""
        started = begun.started if begun is not None else time.perf_counter()
        attempts = _Attempts()
        # What is left of the step's time: a first attempt that failed at once may have used
        # some of it (an INLINE step's work, an ASYNC step's before its first suspension); one
        # that suspended did so microseconds after it started.
        deadline = Deadline(_time_left(processor, started) if isinstance(begun, _Failed)
                            else processor.timeout_s)
        status, data, error = ProcessorStatus.OK, {}, None
        try:
            if isinstance(begun, _Suspended):
                # The first attempt waits at once: it is awaited right here, with no coroutine
                # between (every layer of the chain is resumed at each of its wake-ups), and
                # its retries get what is left of the step's time.
                attempts.count, attempts.open = 1, True
                try:
                    data = self._checked(processor, await Resumed(
                        begun.step, begun.first, deadline), attempts)
                except Exception as exc:
                    if deadline.expired() or not self._retryable(processor, resilient,
                                                                 attempts, exc):
                        raise
                    deadline = Deadline(_time_left(processor, started))
                    data = await within(self._retries(processor, context, attempts, started,
                                                      exc), deadline)
            else:
                data = await within(self._attempts(processor, context, attempts, resilient,
                                                   begun, started), deadline)
        except TimeoutError as exc:
            # Only our own deadline is a timeout; a TimeoutError raised by the step is a failure.
            expired = deadline.expired()
            status = ProcessorStatus.TIMEOUT if expired else ProcessorStatus.FAILED
            error = f"timed out after {processor.timeout_s}s" if expired else describe_error(exc)
            if attempts.open:
                self._attempt_failed(processor.name, attempts.count, exc)
        except Exception as exc:
            status, error = ProcessorStatus.FAILED, describe_error(exc)
        return self._settled(processor, _outcome(status, data, error, max(attempts.count, 1),
                                                 started),
                             self._breakers[processor.name] if resilient else None)

    async def _attempts(self, processor: Processor, context: ProcessorContext,
                        attempts: _Attempts, resilient: bool, begun: _Failed | None,
                        started: float) -> dict[str, Any]:
        """The step's data: a first attempt (or its error, when an INLINE or ASYNC step's
        first attempt already failed), then (resilient only) the retries of a transient
        failure, within what is left of the step's timeout since ``started``
        (``time.perf_counter``). The retry machinery is built only once an attempt failed."""
        attempts.count, attempts.open = 1, True
        try:
            if begun is not None:
                raise begun.error
            return self._checked(processor, await self._invoke(processor, context), attempts)
        except Exception as exc:
            if not self._retryable(processor, resilient, attempts, exc):
                raise
            first_error = exc
        return await self._retries(processor, context, attempts, started, first_error)

    def _retryable(self, processor: Processor, resilient: bool, attempts: _Attempts,
                   error: Exception) -> bool:
        """The first attempt failed with ``error`` (told to the observer here, unless it was
        already): True when it is tried again."""
        if attempts.open:
            attempts.open = False
            self._attempt_failed(processor.name, attempts.count, error)
        return resilient and self._retry.retries >= 1 and isinstance(
            error, TransientProcessorError)

    async def _retries(self, processor: Processor, context: ProcessorContext,
                       attempts: _Attempts, started: float, first_error: Exception
                       ) -> dict[str, Any]:
        """The attempts after a transient first failure (``first_error``), within what is
        left of the step's timeout since ``started``; none when nothing is left once the
        first backoff is over (``first_error`` is the step's error then)."""
        retrying = await self._retry.after_first_failure(_time_left(processor, started))
        if retrying is None:
            raise first_error
        async for attempt in retrying:
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
        except Exception as exc:
            attempts.open = False
            self._attempt_failed(processor.name, attempts.count, exc)
            raise
        return self._checked(processor, data, attempts)

    def _checked(self, processor: Processor, data: Any, attempts: _Attempts) -> dict[str, Any]:
        """``data`` as a JSON dict, the attempt reported; TypeError (reported) otherwise."""
        try:
            if not isinstance(data, dict):
                raise TypeError(f"process() returned {type(data).__name__}, expected dict")
            if processor.stage is Stage.COMPOSE and (reply := data.get(REPLY_KEY)) is not None \
                    and not isinstance(reply, str):  # it would be dropped without a word
                raise TypeError(f"process() returned a {REPLY_KEY!r} that is "
                                f"{type(reply).__name__}, expected str")
            data = as_json(data)
        except TypeError as exc:
            attempts.open = False
            self._attempt_failed(processor.name, attempts.count, exc)
            raise
        attempts.open = False
        if self._observer is not None:
            self._notify("on_attempt", processor.name, attempts.count, None)
        return data

    async def _invoke(self, processor: Processor, context: ProcessorContext) -> Any:
        if processor.kind is ExecutionKind.INLINE:
            return processor.process(context)
        if processor.kind is ExecutionKind.ASYNC:
            return await processor.process(context)  # type: ignore[misc]
        if processor.kind is ExecutionKind.THREAD:
            return await self._pools.in_thread(processor, context)
        return await self._pools.in_process(processor, context)

    def pool_usage(self) -> dict[str, dict[str, float]]:
        """Per pool: workers, busy, queued and utilization (see ``WorkerPools.usage``)."""
        return self._pools.usage()

    def start_warm_up(self) -> list[Future[int]]:
        """Start the process workers and build the PROCESS processors' state in them before
        the first event (see ``WorkerPools.start_warm_up``); does not block."""
        return self._pools.start_warm_up(
            [p for p in (*self._analysis, *self._compose) if p.kind is ExecutionKind.PROCESS])

    async def warm_up(self) -> set[int]:
        """``start_warm_up`` and wait for it; returns the pids of the workers that answered."""
        futures = [asyncio.wrap_future(f) for f in self.start_warm_up()]
        return set(await asyncio.gather(*futures))

    def close(self) -> None:
        """Shut both pools down without waiting for stuck work; queued work is cancelled."""
        self._pools.close()

    async def aclose(self, timeout_s: float = 1.0) -> None:
        """Close what the steps hold (``aclose()`` of a step, such as the reply step's HTTP
        client), each within ``timeout_s``, then ``close`` the pools."""
        for processor in (*self._analysis, *self._compose):
            closing = getattr(processor, "aclose", None)
            if closing is None:
                continue
            try:
                async with asyncio.timeout(timeout_s):
                    await closing()
            except Exception:  # a step that cannot close must not keep the others open
                log.warning("processor %s did not close cleanly", processor.name, exc_info=True)
        self.close()

    def _attempt_failed(self, name: str, attempt: int, error: BaseException) -> None:
        """An attempt of step ``name`` raised ``error``: logged with its traceback at DEBUG
        (the outcome carries one line only; a plugin's author needs the rest), observed."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("step %s, attempt %d, failed", name, attempt, exc_info=error)
        self._notify("on_attempt", name, attempt, error)

    def _notify(self, method: str, *args: Any) -> None:
        if self._observer is None:
            return
        try:
            getattr(self._observer, method)(*args)
        except Exception:
            log.exception("pipeline observer %s failed", method)

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


__all__ = [
    "NullObserver",
    "PipelineObserver",
    "PipelineResult",
    "ProcessorPipeline",
    "StepStats",
    "describe_error",
    "spawn_process_pool",
]


def _read_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
