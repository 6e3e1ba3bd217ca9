"""Coroutines run by hand up to their first suspension: no task unless they wait."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from processors.eager import bind_to_own_task, start_eagerly

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="caller")


async def test_a_coroutine_that_never_waits_finishes_at_once_without_a_task():
    done = []

    async def quick() -> None:
        done.append(current.get())

    before = len(asyncio.all_tasks())
    assert start_eagerly(quick()) is None
    assert done == ["caller"] and len(asyncio.all_tasks()) == before


async def test_a_coroutine_that_waits_goes_on_in_a_task_with_its_result():
    steps = []

    async def slow() -> str:
        steps.append("before")
        await asyncio.sleep(0.01)
        steps.append("after")
        return "result"

    task = start_eagerly(slow())
    assert task is not None and steps == ["before"]  # the first part ran at once
    assert await task == "result" and steps == ["before", "after"]


async def test_errors_before_and_after_the_first_suspension_reach_their_callers():
    async def fails_at_once() -> None:
        raise ValueError("now")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError):
        start_eagerly(fails_at_once())
    task = start_eagerly(fails_later())
    assert task is not None
    with pytest.raises(KeyError):
        await task


async def test_a_cancellation_reaches_the_coroutine_and_its_cleanup_runs():
    cleaned = asyncio.Event()

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = start_eagerly(waits_forever())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_context_changes_stay_with_the_coroutine_as_in_a_task():
    seen = []

    async def sets_and_waits() -> None:
        current.set("inside")
        await asyncio.sleep(0)
        seen.append(current.get())

    task = start_eagerly(sets_and_waits())
    assert current.get() == "caller"  # not leaked into the caller by the first part
    assert task is not None
    await task
    assert seen == ["inside"]  # the rest runs in the same context as the first part


async def test_what_binds_to_the_current_task_in_the_first_part_gets_the_task_going_on():
    bound: dict[str, asyncio.Task[object]] = {}

    async def waits(name: str, inner: bool = False) -> None:
        if inner:
            task = start_eagerly(waits("inner"))
            assert task is not None and bound["inner"] is task  # bound before it returned
        assert bind_to_own_task(lambda task: bound.__setitem__(name, task))
        await asyncio.sleep(0)

    assert not bind_to_own_task(lambda task: None)  # outside a first part: the current task
    outer = start_eagerly(waits("outer", inner=True))
    assert outer is not None and bound["outer"] is outer
    assert bound["inner"] is not outer and asyncio.current_task() not in bound.values()
    await asyncio.gather(outer, bound["inner"])
