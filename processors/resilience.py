"""Circuit breaker (pure, time passed in) and the retry policy of pipeline steps (tenacity)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from processors.base import TransientProcessorError


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; open for ``cooldown_s``;
    then half-open, admitting one trial call: success closes, failure re-opens.

    Pure: every method takes ``now`` (monotonic seconds) and does no I/O. Results of calls
    admitted before the breaker opened do not change an open breaker. A half-open trial that
    never reports (e.g. cancelled) is considered lost after another ``cooldown_s``, so the breaker
    cannot get stuck. Not thread-safe: use it from the event loop only.
    """

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.consecutive_failures = 0
        self.opened_count = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None

    @property
    def quiet(self) -> bool:
        """Closed with no failure streak: ``allow`` is True at any time and ``record_success``
        changes nothing, so a caller may skip both (and reading the clock for them)."""
        return self._opened_at is None and self.consecutive_failures == 0

    def state(self, now: float) -> BreakerState:
        """The state at ``now``; open turns half-open by itself once the cool-down has passed."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now < self._opened_at + self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, now: float) -> bool:
        """May a call start at ``now``? In half-open, True once (the trial) until it reports."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        trial = self._trial_started
        if trial is not None and now < trial + self.cooldown_s:
            return False
        self._trial_started = now
        return True

    def record_success(self, now: float) -> None:
        """A call succeeded: closes a half-open breaker, resets the failure streak."""
        if self.state(now) is BreakerState.OPEN:
            return
        self.consecutive_failures = 0
        self._opened_at = None
        self._trial_started = None

    def record_failure(self, now: float) -> None:
        """A call failed: may open the breaker (or re-open it from half-open)."""
        state = self.state(now)
        if state is BreakerState.OPEN:
            return
        self.consecutive_failures += 1
        if state is BreakerState.HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            self._opened_at = now
            self._trial_started = None
            self.opened_count += 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry of one pipeline step.

    Only ``TransientProcessorError`` is retried, at most ``retries`` extra attempts, waiting
    exponentially (``initial_s`` doubling up to ``max_s``) plus up to ``jitter_s`` random jitter.
    A timeout is *not* retried: the per-processor timeout bounds all attempts together, so when
    it fires there is no budget left; a processor wanting per-attempt timeouts (an HTTP call)
    turns its own timeout into ``TransientProcessorError``. No new attempt starts after
    ``budget_s`` has elapsed.
    """

    retries: int = 2
    initial_s: float = 0.05
    max_s: float = 1.0
    jitter_s: float = 0.05

    def retrying(
        self, budget_s: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> AsyncRetrying:
        """A fresh tenacity controller for one step execution (raises the last error itself)."""
        return self._controller(self.retries + 1, self.initial_s, budget_s, sleep)

    async def after_first_failure(
        self, budget_s: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> AsyncRetrying | None:
        """The rest of ``retrying`` once its first attempt failed transiently outside it: waits
        the first backoff, then controls the ``retries`` attempts left (same waits as
        ``retrying``), within what is left of ``budget_s`` after that wait; None, without
        waiting when ``budget_s`` is already spent, when nothing is left (tenacity would start
        one more attempt whatever its budget). Lets a caller try once with no retry machinery
        on the path of success."""
        if budget_s <= 0:
            return None
        waited_from = time.monotonic()
        await sleep(min(self.initial_s, self.max_s) + random.uniform(0, self.jitter_s))
        left_s = budget_s - (time.monotonic() - waited_from)
        if left_s <= 0:
            return None
        # Its attempt n is retrying's attempt n + 1: the backoff starts one doubling later.
        return self._controller(self.retries, self.initial_s * 2, left_s, sleep)

    def _controller(self, attempts: int, first_wait_s: float, budget_s: float,
                    sleep: Callable[[float], Awaitable[None]]) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception_type(TransientProcessorError),
            wait=wait_exponential_jitter(multiplier=first_wait_s, max=self.max_s,
                                         jitter=self.jitter_s),
            stop=stop_after_attempt(attempts) | stop_before_delay(budget_s),
            sleep=sleep,
            reraise=True,
        )
