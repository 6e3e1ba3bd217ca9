"""Await a step under a deadline, paying for the timer only when the step really waits.

Most async steps (reply templates, thread tracking) finish without ever suspending: a timer
armed for each of them would be created, pushed on the event loop's heap and cancelled for
nothing, thousands of times a second. ``within`` runs the step's coroutine up to its first
suspension by hand; if it finishes there, no timer exists. Otherwise the deadline is armed and
the rest of the coroutine is awaited under it, exactly as ``asyncio.timeout`` would (the
deadline counts from that first suspension, microseconds after the step started).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from processors.eager import Resumed

__all__ = ["Deadline", "within"]

T = TypeVar("T")


class Deadline:
    """A step's time limit; ``expired`` is True only if its timer was armed and fired."""

    __slots__ = ("_scope", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._scope: asyncio.Timeout | None = None

    def arm(self) -> asyncio.Timeout:
        self._scope = asyncio.timeout(self.timeout_s)
        return self._scope

    def expired(self) -> bool:
        return self._scope is not None and self._scope.expired()


async def within(step: Coroutine[Any, Any, T], deadline: Deadline) -> T:
    """``await step``, cancelled at ``deadline`` (raising ``TimeoutError``) if it suspends."""
    try:
        suspended_on = step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        step.close()
        raise
    async with deadline.arm():
        return await Resumed(step, suspended_on)
