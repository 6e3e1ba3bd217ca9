from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.base import TransientProcessorError
from processors.resilience import BreakerState, CircuitBreaker, RetryPolicy


def test_opens_after_threshold_consecutive_failures():
    """N consecutive failures open the breaker; fewer keep it closed."""
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    for _ in range(2):
        breaker.record_failure(0)
    assert breaker.allow(0) and breaker.state(0) is BreakerState.CLOSED
    breaker.record_failure(0)
    assert breaker.state(0) is BreakerState.OPEN
    assert not breaker.allow(9.99)
    assert breaker.opened_count == 1


def test_success_resets_the_failure_streak():
    """Failures separated by a success are not consecutive."""
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10)
    breaker.record_failure(0)
    breaker.record_success(1)
    breaker.record_failure(2)
    assert breaker.state(2) is BreakerState.CLOSED


def test_half_open_admits_exactly_one_trial():
    """After the cool-down one call is let through; others wait for its result."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.record_failure(0)
    assert breaker.state(10) is BreakerState.HALF_OPEN
    assert breaker.allow(10)
    assert not breaker.allow(10.5)


def test_trial_success_closes_trial_failure_reopens():
    """A successful trial closes the breaker; a failed one opens it for another cool-down."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.record_failure(0)
    assert breaker.allow(10)
    breaker.record_failure(11)
    assert breaker.state(20.9) is BreakerState.OPEN
    assert breaker.opened_count == 2
    assert breaker.allow(21)
    breaker.record_success(21)
    assert breaker.state(21) is BreakerState.CLOSED
    assert breaker.allow(21) and breaker.allow(21)


def test_late_results_do_not_change_an_open_breaker():
    """Results of calls admitted before opening neither close nor extend it."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.record_failure(0)
    breaker.record_success(1)
    breaker.record_failure(5)
    assert breaker.state(9) is BreakerState.OPEN
    assert breaker.state(10) is BreakerState.HALF_OPEN
    assert breaker.opened_count == 1


def test_lost_trial_is_replaced_after_a_cool_down():
    """A half-open trial that never reports does not block the breaker forever."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.record_failure(0)
    assert breaker.allow(10)
    assert not breaker.allow(19.9)
    assert breaker.allow(20)


def test_invalid_configuration_rejected():
    """Threshold below one or a non-positive cool-down are refused."""
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0)


operations = st.lists(
    st.tuples(st.floats(0, 5, allow_nan=False), st.sampled_from(["allow", "ok", "fail"])),
    max_size=60,
)


@given(operations, st.integers(1, 4), st.floats(0.5, 10))
def test_never_allows_while_open_before_cool_down(ops, threshold, cooldown):
    """Property: after the breaker opens at t, no call is allowed before t + cooldown."""
    breaker = CircuitBreaker(threshold, cooldown)
    now, open_until, streak = 0.0, float("-inf"), 0
    for step, op in ops:
        now += step
        if op == "allow":
            allowed = breaker.allow(now)
            if now < open_until:
                assert not allowed
            continue
        was_open = breaker.state(now) is BreakerState.OPEN
        if op == "ok":
            breaker.record_success(now)
            streak = streak if was_open else 0
            continue
        breaker.record_failure(now)
        streak = streak if was_open else streak + 1
        if breaker.state(now) is BreakerState.OPEN and not was_open:
            open_until = now + cooldown
        if not was_open and streak >= threshold:
            assert breaker.state(now) is BreakerState.OPEN


@given(operations, st.integers(1, 4), st.floats(0.5, 10))
def test_a_quiet_breaker_allows_and_ignores_a_success(ops, threshold, cooldown):
    """Property: whenever ``quiet`` holds, ``allow`` is True and ``record_success`` changes
    nothing (callers skip both); it holds exactly when closed with no failure streak."""
    import copy

    breaker = CircuitBreaker(threshold, cooldown)
    now = 0.0
    for step, op in ops:
        now += step
        assert breaker.quiet == (breaker.state(now) is BreakerState.CLOSED
                                 and breaker.consecutive_failures == 0)
        if breaker.quiet:
            probe = copy.copy(breaker)
            assert probe.allow(now) and vars(probe) == vars(breaker)
            probe.record_success(now)
            assert vars(probe) == vars(breaker)
        if op == "allow":
            breaker.allow(now)
        elif op == "ok":
            breaker.record_success(now)
        else:
            breaker.record_failure(now)


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def _run(policy: RetryPolicy, failures: list[BaseException], budget_s: float = 5.0,
               sleep: Recorder | None = None) -> int:
    attempts = 0
    async for attempt in policy.retrying(budget_s, sleep or Recorder()):
        with attempt:
            attempts += 1
            if failures:
                raise failures.pop(0)
    return attempts


async def test_retries_transient_errors_then_succeeds():
    """Transient failures are retried; the call succeeds on the next attempt."""
    assert await _run(RetryPolicy(retries=2), [TransientProcessorError("a")]) == 2


async def test_gives_up_after_retries_with_the_last_error():
    """At most `retries` extra attempts, then the last transient error is raised as-is."""
    errors = [TransientProcessorError(str(i)) for i in range(5)]
    with pytest.raises(TransientProcessorError, match="2"):
        await _run(RetryPolicy(retries=2), errors)
    assert len(errors) == 2  # three attempts consumed three errors


async def test_other_errors_are_not_retried():
    """A non-transient error fails at once."""
    errors: list[BaseException] = [ValueError("bad"), TransientProcessorError()]
    with pytest.raises(ValueError):
        await _run(RetryPolicy(retries=3), errors)
    assert len(errors) == 1


async def test_backoff_is_exponential_and_capped():
    """Waits double from initial_s up to max_s (no jitter here)."""
    sleep = Recorder()
    policy = RetryPolicy(retries=4, initial_s=0.1, max_s=0.3, jitter_s=0)
    await _run(policy, [TransientProcessorError() for _ in range(4)], sleep=sleep)
    assert sleep.sleeps == pytest.approx([0.1, 0.2, 0.3, 0.3])


async def test_jitter_stays_within_bounds():
    """Jitter adds between 0 and jitter_s to each wait."""
    sleep = Recorder()
    policy = RetryPolicy(retries=3, initial_s=0.1, max_s=10, jitter_s=0.05)
    await _run(policy, [TransientProcessorError() for _ in range(3)], sleep=sleep)
    for base, waited in zip([0.1, 0.2, 0.4], sleep.sleeps, strict=True):
        assert base <= waited <= base + 0.05


async def test_no_attempt_starts_past_the_budget():
    """A wait that would end past the time budget is not taken: the error surfaces."""
    policy = RetryPolicy(retries=5, initial_s=1.0, jitter_s=0)
    errors = [TransientProcessorError() for _ in range(5)]
    with pytest.raises(TransientProcessorError):
        await _run(policy, errors, budget_s=0.5)
    assert len(errors) == 4


async def test_no_retry_is_controlled_once_the_budget_is_spent():
    """After a first failure, a spent budget gets no controller (tenacity would still start
    one attempt) and no backoff; a budget the backoff uses up gets none either."""
    sleeps = Recorder()
    assert await RetryPolicy().after_first_failure(0.0, sleeps) is None
    assert sleeps.sleeps == []

    async def backoff_past_the_budget(seconds: float) -> None:
        await asyncio.sleep(0.02)

    assert await RetryPolicy(initial_s=0.001, jitter_s=0).after_first_failure(
        0.01, backoff_past_the_budget) is None
    assert await RetryPolicy().after_first_failure(5.0, Recorder()) is not None
