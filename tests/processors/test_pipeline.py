from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from processors.base import ExecutionKind, Stage, TransientProcessorError
from processors.cache import ContextCache
from processors.emotion import EmotionProcessor
from processors.memory import MemoryProcessor
from processors.pipeline import ProcessorPipeline, spawn_process_pool
from processors.reply import ReplyProcessor
from processors.thread import ThreadProcessor
from schemas.context import ProcessorContext
from schemas.events import ProcessorOutcome, ProcessorStatus
from stream.settings import load_settings

# -- test processors (module level: PROCESS ones are re-imported by spawned workers) ----------


@dataclass
class Echo:
    name: str = "echo"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 1.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"content": context.event.content}


@dataclass
class Boom:
    name: str = "boom"
    kind: ExecutionKind = ExecutionKind.THREAD
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 1.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        raise ValueError("lexicon missing")


@dataclass
class Sleepy:
    """Sleeps on the loop (ASYNC) or blocks a worker thread (THREAD)."""

    name: str = "sleepy"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 0.2
    seconds: float = 1.0

    async def _sleep(self, context: ProcessorContext) -> dict[str, Any]:
        await asyncio.sleep(self.seconds)
        return {}

    def _block(self, context: ProcessorContext) -> dict[str, Any]:
        time.sleep(self.seconds)
        return {}


@dataclass
class Flaky:
    """Fails with ``error`` while ``failures_left`` > 0 (or forever while ``broken``)."""

    name: str = "flaky"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 1.0
    failures_left: int = 0
    broken: bool = False
    error: type[Exception] = TransientProcessorError
    calls: int = 0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        return self.attempt()

    def attempt(self) -> dict[str, Any]:
        self.calls += 1
        if self.broken or self.failures_left > 0:
            self.failures_left -= 1
            raise self.error("upstream hiccup")
        return {"calls": self.calls}


@dataclass
class Spy:
    """Compose step recording the analysis it was given."""

    name: str = "spy"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.COMPOSE
    timeout_s: float = 1.0
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        self.seen.append(dict(context.analysis))
        return {"reply": f"seen {sorted(context.analysis)}"}


@dataclass
class WhereAmI:
    name: str = "where"
    kind: ExecutionKind = ExecutionKind.PROCESS
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 10.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"pid": os.getpid()}


@dataclass
class DiesOnce:
    """Kills its worker process the first time (marker file absent), then answers."""

    marker: str
    name: str = "dies_once"
    kind: ExecutionKind = ExecutionKind.PROCESS
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 15.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return {"pid": os.getpid()}


class Recorder:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, int, str | None]] = []
        self.outcomes: dict[str, ProcessorOutcome] = {}

    def on_attempt(self, name: str, attempt: int, error: BaseException | None) -> None:
        self.attempts.append((name, attempt, type(error).__name__ if error else None))

    def on_outcome(self, name: str, outcome: ProcessorOutcome) -> None:
        self.outcomes[name] = outcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sleepy(kind: ExecutionKind) -> Sleepy:
    step = Sleepy(name=f"sleepy_{kind}", kind=kind)
    step.process = step._sleep if kind is ExecutionKind.ASYNC else step._block  # type: ignore[method-assign]
    return step


@pytest.fixture(scope="module")
def pools() -> Iterator[tuple[ThreadPoolExecutor, Any]]:
    threads, processes = ThreadPoolExecutor(8), spawn_process_pool(2)
    yield threads, processes
    threads.shutdown(wait=False, cancel_futures=True)
    processes.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def build(pools):
    def _build(*processors: Any, **options: Any) -> ProcessorPipeline:
        return ProcessorPipeline(list(processors), *pools, **options)

    return _build


def default_steps() -> list[Any]:
    return [EmotionProcessor(timeout_s=10), MemoryProcessor(ContextCache()), ThreadProcessor(),
            ReplyProcessor()]


async def test_all_ok_with_default_processors(build, make_context):
    """Emotion (process), memory (thread), thread (async) and reply all succeed; no degradation."""
    pipeline = build(*default_steps())
    context = make_context("My order never arrived and this is awful", history=[
        "I placed an order last week", "the order number is 1234"])
    reply, outcomes, degraded = await pipeline.run(context)
    assert degraded == []
    assert {n: o.status for n, o in outcomes.items()} == dict.fromkeys(
        ["emotion", "memory", "thread", "reply"], ProcessorStatus.OK)
    assert outcomes["emotion"].data["label"] == "negative"
    assert outcomes["memory"].data["related"]
    assert reply is not None and reply.startswith("I'm sorry")
    assert reply == outcomes["reply"].data["reply"]


async def test_failing_processor_is_degraded_others_present(build, make_context):
    """A raising step becomes FAILED with its error text; the event is still answered."""
    reply, outcomes, degraded = await build(Echo(), Boom(), ReplyProcessor()).run(
        make_context("hello"))
    assert degraded == ["boom"]
    assert outcomes["boom"].status is ProcessorStatus.FAILED
    assert outcomes["boom"].error == "ValueError: lexicon missing"
    assert outcomes["echo"].data == {"content": "hello"}
    assert reply


@pytest.mark.parametrize("kind", [ExecutionKind.ASYNC, ExecutionKind.THREAD])
async def test_slow_processor_times_out_near_its_timeout(build, make_context, kind):
    """A step past timeout_s yields TIMEOUT after about timeout_s, on the loop or in a thread."""
    step = sleepy(kind)
    started = time.monotonic()
    _, outcomes, degraded = await build(Echo(), step).run(make_context("hi"))
    elapsed = time.monotonic() - started
    assert outcomes[step.name].status is ProcessorStatus.TIMEOUT
    assert outcomes[step.name].error == "timed out after 0.2s"
    assert degraded == [step.name]
    # TIMEOUT, not OK, already shows the deadline ended the wait before the step's 1 s did; the
    # deadline may fire up to 1 ms early (processors.deadline, rule 3), never later than due.
    assert elapsed >= 0.2 - 0.001


async def test_transient_failure_then_success_counts_two_attempts(build, make_context):
    """One transient error is retried: OK with attempts == 2, seen by the observer."""
    observer = Recorder()
    _, outcomes, degraded = await build(Flaky(failures_left=1), observer=observer).run(
        make_context("hi"))
    assert degraded == []
    assert (outcomes["flaky"].status, outcomes["flaky"].attempts) == (ProcessorStatus.OK, 2)
    assert outcomes["flaky"].data == {"calls": 2}  # the failed first attempt ran once
    assert observer.attempts == [("flaky", 1, "TransientProcessorError"), ("flaky", 2, None)]
    assert observer.outcomes["flaky"] == outcomes["flaky"]


@dataclass
class InlineFlaky(Flaky):
    """``Flaky`` as an INLINE step."""

    name: str = "inline-flaky"
    kind: ExecutionKind = ExecutionKind.INLINE

    def process(self, context: ProcessorContext) -> dict[str, Any]:  # type: ignore[override]
        return self.attempt()


async def test_an_inline_step_is_retried_without_running_its_first_attempt_twice(
        build, make_context):
    """An INLINE step runs its first attempt on the loop; a transient failure goes to the
    retries, which count on from it: each attempt is one call."""
    from processors.resilience import RetryPolicy

    observer = Recorder()
    flaky, failing = InlineFlaky(failures_left=2), InlineFlaky(name="permanent",
                                                              failures_left=9, error=KeyError)
    pipeline = build(flaky, failing, observer=observer,
                     retry_policy=RetryPolicy(retries=3, initial_s=0.001))
    _, outcomes, degraded = await pipeline.run(make_context("hi"))
    assert (outcomes["inline-flaky"].status, outcomes["inline-flaky"].attempts) == (
        ProcessorStatus.OK, 3)
    assert flaky.calls == 3 and outcomes["inline-flaky"].data == {"calls": 3}
    assert [a for a in observer.attempts if a[0] == "inline-flaky"] == [
        ("inline-flaky", 1, "TransientProcessorError"), ("inline-flaky", 2,
                                                         "TransientProcessorError"),
        ("inline-flaky", 3, None)]
    assert (outcomes["permanent"].status, outcomes["permanent"].attempts) == (
        ProcessorStatus.FAILED, 1)
    assert failing.calls == 1 and degraded == ["permanent"]
    assert observer.attempts.count(("permanent", 1, "KeyError")) == 1


async def test_retries_exhausted_and_permanent_errors(build, make_context):
    """Transient errors stop after retries+1 attempts; other errors after one."""
    from processors.resilience import RetryPolicy

    transient = Flaky(name="transient", broken=True)
    permanent = Flaky(name="permanent", broken=True, error=KeyError)
    pipeline = build(transient, permanent, retry_policy=RetryPolicy(retries=2, initial_s=0.001))
    _, outcomes, degraded = await pipeline.run(make_context("hi"))
    assert (outcomes["transient"].attempts, outcomes["permanent"].attempts) == (3, 1)
    assert sorted(degraded) == ["permanent", "transient"]
    assert pipeline.stats()["transient"]["retries"] == 2


async def test_breaker_opens_skips_and_closes_after_cool_down(build, make_context):
    """After the threshold of failed runs the step is SKIPPED uncalled; after the cool-down a
    successful trial closes the breaker again."""
    clock = FakeClock()
    flaky = Flaky(broken=True, error=RuntimeError)
    pipeline = build(Echo(), flaky, failure_threshold=2, cooldown_s=10, clock=clock)
    context = make_context("hi")
    for _ in range(2):
        await pipeline.run(context)
    _, outcomes, degraded = await pipeline.run(context)
    assert outcomes["flaky"].status is ProcessorStatus.SKIPPED
    assert outcomes["flaky"].attempts == 0
    assert degraded == ["flaky"] and flaky.calls == 2
    assert pipeline.stats()["flaky"]["breaker"] == "open"

    flaky.broken = False
    clock.now = 10.0
    _, outcomes, degraded = await pipeline.run(context)
    assert outcomes["flaky"].status is ProcessorStatus.OK and degraded == []
    stats = pipeline.stats()["flaky"]
    assert (stats["breaker"], stats["opened_count"], stats["skipped"]) == ("closed", 1, 1)


async def test_a_circuit_that_opens_or_closes_is_logged_and_failures_carry_their_traceback(
        build, make_context, caplog):
    """One warning when a step stops being called for everyone and one when it runs again;
    each failed attempt at DEBUG with its traceback (the outcome keeps one line)."""
    import logging

    clock = FakeClock()
    flaky = Flaky(broken=True, error=RuntimeError)
    pipeline = build(flaky, failure_threshold=2, cooldown_s=10, clock=clock)
    context = make_context("hi")
    with caplog.at_level(logging.DEBUG, logger="processors.pipeline"):
        for _ in range(3):
            await pipeline.run(context)
        flaky.broken = False
        clock.now = 10.0
        await pipeline.run(context)
        await pipeline.run(context)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "step flaky failed 2 times in a row (last: RuntimeError: upstream hiccup): its calls are "
        "skipped for 10 s, then one is tried",
        "step flaky succeeded again: its calls run again"]
    failures = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert [r.getMessage() for r in failures] == ["step flaky, attempt 1, failed"] * 2
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


async def test_process_kind_runs_in_another_process(build, make_context):
    """PROCESS steps run in a worker process, side by side with the real EmotionProcessor."""
    _, outcomes, degraded = await build(WhereAmI(), EmotionProcessor(timeout_s=10)).run(
        make_context("what a lovely day"))
    assert degraded == []
    assert outcomes["where"].data["pid"] != os.getpid()
    assert outcomes["emotion"].data["label"] == "positive"


async def test_compose_sees_only_successful_analysis(build, make_context):
    """The compose stage gets data of OK analysis steps only; its reply is the result."""
    spy = Spy()
    reply, _, degraded = await build(Echo(), Boom(), spy).run(make_context("hi"))
    assert spy.seen == [{"echo": {"content": "hi"}}]
    assert reply == "seen ['echo']"
    assert degraded == ["boom"]


async def test_run_basic_has_no_retries_and_no_breaker(build, make_context):
    """run_basic: one attempt per step and a failing step is still called every time."""
    flaky = Flaky(broken=True)
    pipeline = build(Echo(), flaky, failure_threshold=1)
    for _ in range(3):
        reply, outcomes, degraded = await pipeline.run_basic(make_context("hi"))
        assert outcomes["flaky"].status is ProcessorStatus.FAILED
        assert outcomes["flaky"].attempts == 1
    assert flaky.calls == 3
    assert reply is None and degraded == ["flaky"]


async def test_broken_observer_does_not_break_the_pipeline(build, make_context):
    """An observer raising on every call is logged and ignored."""

    class Broken:
        def on_attempt(self, *args: Any) -> None:
            raise RuntimeError("tracer down")

        on_outcome = on_attempt

    _, outcomes, degraded = await build(Echo(), observer=Broken()).run(make_context("hi"))
    assert outcomes["echo"].status is ProcessorStatus.OK and degraded == []


async def test_non_dict_result_fails_the_step(build, make_context):
    """A step returning something other than a dict is FAILED with a TypeError."""

    class Wrong(Echo):
        async def process(self, context: ProcessorContext) -> Any:
            return ["not", "a", "dict"]

    _, outcomes, _ = await build(Wrong(name="wrong")).run(make_context("hi"))
    assert outcomes["wrong"].error == "TypeError: process() returned list, expected dict"


async def test_a_composer_whose_reply_is_not_text_fails_instead_of_being_dropped(
        build, make_context):
    """A compose step's "reply" becomes the response's reply only as a string: any other
    value fails the step (named in degraded), where it would otherwise vanish as no reply.
    An analysis step's data may hold that key as anything, and a composer may omit it."""

    class NumberReply(Echo):
        async def process(self, context: ProcessorContext) -> Any:
            return {"reply": 42}

    class NoReply(Echo):
        async def process(self, context: ProcessorContext) -> Any:
            return {"actions": ["wave"]}

    reply, outcomes, degraded = await build(
        NumberReply(name="numbers", stage=Stage.COMPOSE), NoReply(name="quiet", stage=Stage.COMPOSE),
        NumberReply(name="analysis")).run(make_context("hi"))
    assert reply is None and degraded == ["numbers"]
    assert outcomes["numbers"].error == \
        "TypeError: process() returned a 'reply' that is int, expected str"
    assert outcomes["quiet"].status is ProcessorStatus.OK
    assert outcomes["analysis"].data == {"reply": 42}


async def test_data_that_is_not_json_fails_only_its_step(build, make_context):
    """Unserialisable data fails its step (the response can still be published); keys that are
    not strings and sets are published as JSON has them."""

    class Opaque(Echo):
        async def process(self, context: ProcessorContext) -> Any:
            return {"handle": object()}

    class Loose(Echo):
        async def process(self, context: ProcessorContext) -> Any:
            return {1: "one", "tags": {"a"}}

    class Huge(Echo):
        async def process(self, context: ProcessorContext) -> Any:
            return {"n": 2**70}  # valid for pydantic, beyond what the JSON encoder takes

    _, outcomes, degraded = await build(Opaque(name="opaque"), Loose(name="loose"),
                                        Huge(name="huge"), Echo()).run(make_context("hi"))
    assert degraded == ["opaque", "huge"]
    for name in ("opaque", "huge"):
        error = outcomes[name].error
        assert error is not None
        assert error.startswith("TypeError: process() returned data that is not JSON")
    assert outcomes["loose"].data == {"1": "one", "tags": ["a"]}
    assert outcomes["echo"].data == {"content": "hi"}


def test_duplicate_names_rejected(pools):
    """Two processors with one name cannot form a pipeline."""
    with pytest.raises(ValueError, match="unique"):
        ProcessorPipeline([Echo(), Echo()], *pools)


async def test_broken_process_pool_is_replaced_and_retried(make_context, tmp_path):
    """A worker dying breaks the pool: a new pool is made and the attempt retried there."""
    pipeline = ProcessorPipeline(
        [DiesOnce(marker=str(tmp_path / "died"))], ThreadPoolExecutor(1), spawn_process_pool(1),
        process_pool_factory=lambda: spawn_process_pool(1),
    )
    try:
        _, outcomes, degraded = await pipeline.run(make_context("hi"))
    finally:
        pipeline.close()
    assert degraded == []
    assert outcomes["dies_once"].attempts == 2


async def test_from_settings_warms_up_and_close_shuts_pools(make_context):
    """from_settings builds working pools; close() refuses further work without waiting."""
    settings = load_settings(max_worker_processes=1, max_worker_threads=2, processor_retries=0)
    pipeline = ProcessorPipeline.from_settings([WhereAmI(), Boom()], settings)
    pids = await pipeline.warm_up()
    _, outcomes, _ = await pipeline.run(make_context("hi"))
    assert outcomes["where"].data["pid"] in pids
    pipeline.close()
    _, outcomes, _ = await pipeline.run(make_context("hi"))
    assert outcomes["where"].status is ProcessorStatus.FAILED
    assert "shutdown" in (outcomes["where"].error or "")


@dataclass
class AwaitsAFuture:
    """An ASYNC step whose ``process`` returns an awaitable that is not a coroutine."""

    name: str = "future"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 0.2
    resolve_after_s: float | None = 0.01

    def process(self, context: ProcessorContext) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.resolve_after_s is not None:
            asyncio.get_running_loop().call_later(self.resolve_after_s, future.set_result,
                                                  {"resolved": True})
        return future


async def test_an_async_step_may_return_any_awaitable(build, make_context):
    """A step returning a future rather than a coroutine is awaited as one: its value when it
    resolves in time, a timeout when it does not."""
    _, outcomes, degraded = await build(
        AwaitsAFuture(), AwaitsAFuture(name="never", resolve_after_s=None)).run(
        make_context("hi"))
    assert outcomes["future"].status is ProcessorStatus.OK
    assert outcomes["future"].data == {"resolved": True}
    assert outcomes["never"].status is ProcessorStatus.TIMEOUT and degraded == ["never"]


@dataclass
class FailsFirst:
    """An ASYNC step whose first attempt fails transiently, after waiting (``suspend``) or
    after ``busy_s`` of work on the loop without suspending; later attempts succeed, after
    waiting ``later_wait_s``."""

    suspend: bool
    busy_s: float = 0.0
    later_wait_s: float = 0.0
    name: str = "fails-first"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 5.0
    calls: int = 0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            if self.suspend:
                await asyncio.sleep(0.01)
            time.sleep(self.busy_s)
            raise TransientProcessorError("first try")
        if self.later_wait_s:
            await asyncio.sleep(self.later_wait_s)
        return {"calls": self.calls}


@pytest.mark.parametrize("suspend", [True, False], ids=["after-waiting", "before-waiting"])
async def test_a_first_attempt_failing_is_retried_once_and_timed_from_its_start(
        build, make_context, suspend):
    """An ASYNC step's failed first attempt, whether it failed after waiting or at once, is
    retried without running it again, reported as attempt 1, and the outcome's duration counts
    from that first attempt's start."""
    from processors.resilience import RetryPolicy

    observer = Recorder()
    step = FailsFirst(suspend=suspend, busy_s=0.05)
    pipeline = build(step, observer=observer, retry_policy=RetryPolicy(retries=2,
                                                                       initial_s=0.001))
    _, outcomes, degraded = await pipeline.run(make_context("hi"))
    outcome = outcomes["fails-first"]
    assert (outcome.status, outcome.attempts, outcome.data) == (ProcessorStatus.OK, 2,
                                                                  {"calls": 2})
    assert step.calls == 2 and degraded == []
    assert observer.attempts == [("fails-first", 1, "TransientProcessorError"),
                                 ("fails-first", 2, None)]
    assert outcome.duration_ms >= 50


async def test_retries_after_a_first_attempt_that_waited_get_only_what_is_left_of_the_time(
        build, make_context):
    """The retry of a first attempt that failed after waiting, under a 0.3 s limit, is cut off
    when the 0.3 s since the first attempt's start are over: a timeout, reported once for each
    attempt."""
    from processors.resilience import RetryPolicy

    observer = Recorder()
    step = FailsFirst(suspend=True, later_wait_s=30, timeout_s=0.3)
    pipeline = build(step, observer=observer, retry_policy=RetryPolicy(retries=2,
                                                                       initial_s=0.001))
    started = time.monotonic()
    _, outcomes, degraded = await pipeline.run(make_context("hi"))
    elapsed = time.monotonic() - started
    outcome = outcomes["fails-first"]
    assert (outcome.status, outcome.attempts) == (ProcessorStatus.TIMEOUT, 2)
    assert outcome.error == "timed out after 0.3s" and degraded == ["fails-first"]
    assert step.calls == 2
    assert observer.attempts == [("fails-first", 1, "TransientProcessorError"),
                                 ("fails-first", 2, "TimeoutError")]
    assert 0.3 - 0.002 <= elapsed < 5  # the limit (the shared timer may fire 1 ms early),
    # and well before the 30 s the retry would wait


@dataclass
class SlowInlineFlaky(InlineFlaky):
    """``InlineFlaky`` whose every attempt works ``busy_s`` on the loop before failing."""

    name: str = "slow-inline-flaky"
    busy_s: float = 0.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:  # type: ignore[override]
        time.sleep(self.busy_s)
        return self.attempt()


@pytest.mark.parametrize("kind", ["inline", "async"])
async def test_a_first_attempt_that_used_up_the_steps_time_is_not_retried(
        build, make_context, kind):
    """A transient failure after more than the step's timeout of work (which a deadline cannot
    cut short: it never suspended) leaves no time for a retry: one attempt, failed with its
    error, and no second call (for an INLINE step, another block of the loop)."""
    from processors.resilience import RetryPolicy

    step: Any = (SlowInlineFlaky(busy_s=0.15, broken=True, timeout_s=0.1) if kind == "inline"
                 else FailsFirst(suspend=False, busy_s=0.15, later_wait_s=30, timeout_s=0.1))
    pipeline = build(step, retry_policy=RetryPolicy(retries=3, initial_s=0.001))
    _, outcomes, degraded = await pipeline.run(make_context("hi"))
    outcome = outcomes[step.name]
    assert (outcome.status, outcome.attempts) == (ProcessorStatus.FAILED, 1)
    assert outcome.error is not None and "TransientProcessorError" in outcome.error
    assert step.calls == 1 and degraded == [step.name]


@dataclass
class Hangs:
    """An ASYNC step that waits for good; ``cancelled`` is set when its wait is cancelled."""

    name: str = "hangs"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 30.0
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return {}


async def test_cancelling_a_run_during_an_inline_steps_retry_cancels_the_steps_beside_it(
        build, make_context):
    """Two waiting steps run side by side while an inline step's retry waits on the loop: a
    run cancelled then (the engine stopping) cancels them too, instead of leaving them
    running with nobody to hear of them."""
    from processors.resilience import RetryPolicy

    first, second = Hangs(name="hangs-1"), Hangs(name="hangs-2")
    flaky = InlineFlaky(failures_left=1)
    pipeline = build(first, second, flaky, retry_policy=RetryPolicy(retries=1, initial_s=30))
    run = asyncio.create_task(pipeline.run(make_context("hi")))
    await asyncio.sleep(0.05)
    assert flaky.calls == 1 and not run.done()  # waiting on the retry's backoff
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.wait_for(asyncio.gather(first.cancelled.wait(), second.cancelled.wait()), 5)


@dataclass
class FinishesDespiteCancellation:
    """An ASYNC step that ends with a value even when cancelled (it swallows the cancel)."""

    name: str = "stubborn"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 30.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return {}


async def test_the_steps_cancelled_beside_an_inline_retry_leave_nothing_unread(
        build, make_context):
    """Cancelled with the run, the gathered steps end while no one awaits them: how they ended
    is read, so asyncio reports no exception that was never retrieved."""
    import gc

    from processors.resilience import RetryPolicy

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        flaky = InlineFlaky(failures_left=1)
        pipeline = build(Hangs(), FinishesDespiteCancellation(), flaky,
                         retry_policy=RetryPolicy(retries=1, initial_s=30))
        run = asyncio.create_task(pipeline.run(make_context("hi")))
        await asyncio.sleep(0.05)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        for _ in range(3):  # the gathered steps end on the next turns of the loop
            await asyncio.sleep(0)
        del run
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert not [m for m in reported if "never retrieved" in m], reported


@dataclass
class KillsItsWorkerOnPoison:
    """Kills its worker process for the content "poison", every time; answers the rest."""

    name: str = "fragile"
    kind: ExecutionKind = ExecutionKind.PROCESS
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 60.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        if context.event.content == "poison":
            os._exit(3)
        time.sleep(0.05)
        return {"pid": os.getpid()}


async def test_an_event_that_kills_its_worker_fails_alone_and_breaks_the_pool_once(
        make_context):
    """Beside three other events, one whose step kills its worker every time: the shared pool
    breaks once, the calls in flight in it run again one at a time, alone, and only the one
    whose worker dies again fails (not retried); the others keep their answers."""
    from processors.resilience import RetryPolicy
    from processors.workers import spawn_process_pool

    shared: list[Any] = []
    alone: list[Any] = []

    def pool(made: list[Any], workers: int) -> Any:
        made.append(spawn_process_pool(workers))
        return made[-1]

    pipeline = ProcessorPipeline(
        [KillsItsWorkerOnPoison()], ThreadPoolExecutor(1), pool(shared, 2),
        process_pool_factory=lambda: pool(shared, 2),
        isolation_pool_factory=lambda: pool(alone, 1),
        retry_policy=RetryPolicy(retries=2), failure_threshold=100)
    try:
        await pipeline.warm_up()
        results = await asyncio.gather(*(pipeline.run(make_context(text))
                                         for text in ("poison", "a", "b", "c")))
    finally:
        pipeline.close()
        for made in (*shared, *alone):
            made.shutdown(wait=True, cancel_futures=True)
    poisoned, *others = (outcomes["fragile"] for _, outcomes, _ in results)
    assert poisoned.status is ProcessorStatus.FAILED and poisoned.attempts == 1
    assert "WorkerKilled" in (poisoned.error or "")
    assert [o.status for o in others] == [ProcessorStatus.OK] * 3
    assert len(shared) == 2  # broken once, not once per attempt of the poison
    assert len(alone) <= 2  # broken by the poison alone; a new one if others ran after it
