"""Await a step under a deadline, paying for a timer only when the step really waits, and then
sharing one timer with every other waiting step of the event loop.

Most async steps (reply templates, thread tracking) finish without ever suspending: a timer
armed for each of them would be created, pushed on the event loop's heap and cancelled for
nothing, thousands of times a second. ``within`` runs the step's coroutine up to its first
suspension by hand; if it finishes there, no deadline is armed. Otherwise the deadline counts
from that first suspension (microseconds after the step started) and the rest of the coroutine
is awaited under it; for a step run eagerly on a caller's stack (``processors.eager``), from
when the task that goes on with it begins.

Rules of an armed deadline, those of ``asyncio.timeout``:
1. At its time, a step still waiting has its task cancelled; ``within`` turns that
   cancellation into ``TimeoutError`` unless another cancellation of the task is pending (then
   the ``CancelledError`` goes on, as it must for a stopping engine).
2. A step that ends first (value or error) is never cancelled by it.
3. It may fire up to one millisecond early: the shared timer fires every deadline due within a
   millisecond of the one it was set for (uvloop's own timers keep a millisecond clock too).

Why not ``asyncio.timeout``: it arms and cancels a timer handle per waiting step (about 4 µs
each at a thousand steps in flight). Here the deadlines of one loop wait in lines of equal
timeout, so each line is already in expiry order: arming is an append, ending a flag, and one
timer, set for the earliest deadline still waiting, serves them all. Ended deadlines at the
front of their line are dropped as they end; those behind a waiting one when the timer passes
them.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

from processors.eager import Resumed, bind_to_own_task

__all__ = ["Deadline", "within"]

T = TypeVar("T")

_EARLY_S = 0.001  # rule 3
_UNARMED, _WAITING, _FIRED, _ENDED = range(4)


class Deadline:
    """A step's time limit; ``expired`` is True only if it fired while the step waited."""

    __slots__ = ("_cancelling", "_expired", "_line", "_state", "_task", "at", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.at = 0.0  # loop time it fires at, once armed
        self._state = _UNARMED
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._expired = False
        self._line: deque[Deadline] | None = None  # the watch's line it waits in, once armed

    @property
    def armed(self) -> bool:
        """True once the step suspended and the deadline started counting."""
        return self._state != _UNARMED

    def expired(self) -> bool:
        return self._expired

    def enter(self) -> None:
        """Arm: the step waits from now (``Bound``)."""
        self._state = _WAITING
        # Run eagerly on a caller's stack, the step goes on in a task of its own: the deadline
        # cancels that task, never the caller (which may be a consumer's loop, or a callback
        # outside any task).
        if bind_to_own_task(self._bind_then_arm):
            return
        task = asyncio.current_task()
        if task is None:
            self._state = _UNARMED
            raise RuntimeError("a deadline must be awaited inside a task")
        self._bind(task)
        _watch_of(task.get_loop()).add(self)

    def _bind(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._cancelling = task.cancelling()

    def _bind_then_arm(self, task: asyncio.Task[Any]) -> None:
        """Bind to the task that goes on with an eager run, and arm once it has begun: its
        first step is queued ahead of the arming. Cancelled before that step, a task never
        resumes the step it carries, so the deadline's end would reach the caller as a bare
        cancellation instead of a ``TimeoutError`` (uvloop runs due timers before queued
        callbacks: a loop held up past the deadline would fire it first)."""
        self._bind(task)
        task.get_loop().call_soon(self._arm)

    def _arm(self) -> None:
        task = self._task
        if self._state == _WAITING and task is not None and not task.done():
            _watch_of(task.get_loop()).add(self)

    def _fire(self) -> None:
        assert self._task is not None
        self._state = _FIRED
        self._expired = True
        self._task.cancel()

    def leave(self, error: BaseException | None) -> BaseException | None:
        """The step ended (``Bound``), with ``error`` (None: a value): its cancellation by this
        deadline becomes a ``TimeoutError`` (rule 1)."""
        fired, task = self._state == _FIRED, self._task
        self._state, self._task = _ENDED, None  # an ended deadline may still wait in its line
        line = self._line
        while line and line[0]._state == _ENDED:  # steps end mostly in order: keep lines short
            line.popleft()
        self._line = None
        own = fired and task is not None and task.uncancel() <= self._cancelling
        return TimeoutError() if own and isinstance(error, asyncio.CancelledError) else None


class _Watch:
    """The armed deadlines of one event loop, in lines of equal timeout, behind one timer."""

    __slots__ = ("_lines", "_timer", "_timer_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lines: dict[float, deque[Deadline]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def add(self, deadline: Deadline) -> None:
        deadline.at = at = self.loop.time() + deadline.timeout_s
        line = self._lines.get(deadline.timeout_s)
        if line is None:
            line = self._lines[deadline.timeout_s] = deque()
        line.append(deadline)
        deadline._line = line
        if self._timer is None or at < self._timer_at:
            self._set_timer(at)

    def _set_timer(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time() + _EARLY_S
        earliest: float | None = None
        for timeout_s, line in list(self._lines.items()):
            while line:
                head = line[0]
                if head._state == _WAITING and head.at > now:
                    break
                line.popleft()
                if head._state == _WAITING:
                    head._fire()
            if not line:
                del self._lines[timeout_s]
            elif earliest is None or line[0].at < earliest:
                earliest = line[0].at
        if earliest is not None:
            self._set_timer(earliest)


_local = threading.local()  # each thread runs one loop at a time: its watch is found here


def _watch_of(loop: asyncio.AbstractEventLoop) -> _Watch:
    watch: _Watch | None = getattr(_local, "watch", None)
    if watch is None or watch.loop is not loop:
        # A new loop (or the thread's loop changed): the old watch keeps serving what it holds.
        watch = _local.watch = _Watch(loop)
    return watch


async def within(step: Coroutine[Any, Any, T], deadline: Deadline) -> T:
    """``await step``, cancelled at ``deadline`` (raising ``TimeoutError``) if it suspends."""
    try:
        suspended_on = step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        step.close()
        raise
    return await Resumed(step, suspended_on, deadline)  # type: ignore[no-any-return]
