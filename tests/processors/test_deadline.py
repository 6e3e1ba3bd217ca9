"""A step's deadline costs a timer only when the step suspends, and then acts as asyncio's."""

from __future__ import annotations

import asyncio

import pytest

from processors.deadline import Deadline, within


async def finishes_at_once() -> str:
    return "done"


async def sleeps(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def fails_at_once() -> str:
    raise ValueError("bad input")


async def test_a_step_that_never_suspends_arms_no_timer():
    """A step finishing in its first run returns its value; the deadline was never armed."""
    deadline = Deadline(0.01)
    assert await within(finishes_at_once(), deadline) == "done"
    assert deadline._scope is None and not deadline.expired()


async def test_a_suspending_step_returns_its_value_within_the_deadline():
    """A step that waits and finishes in time returns its value."""
    deadline = Deadline(5)
    assert await within(sleeps(0.01), deadline) == "slept"
    assert not deadline.expired()


async def test_a_step_past_its_deadline_times_out_and_is_cancelled():
    """A step still waiting at the deadline raises TimeoutError, and its coroutine is cancelled."""
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    deadline = Deadline(0.02)
    with pytest.raises(TimeoutError):
        await within(hangs(), deadline)
    assert deadline.expired() and cancelled.is_set()


async def test_errors_travel_as_they_would_through_await():
    """An exception raised before or after the first suspension reaches the caller unchanged."""
    with pytest.raises(ValueError, match="bad input"):
        await within(fails_at_once(), Deadline(1))

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(KeyError):
        await within(fails_later(), Deadline(1))


async def test_cancelling_the_caller_cancels_the_step():
    """A cancellation of the awaiting task reaches the step, not only the wrapper."""
    reached = asyncio.Event()
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            reached.set()
            raise

    task = asyncio.create_task(within(waits(), Deadline(60)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached.is_set()
