"""A step's deadline costs a timer only when the step suspends, and then acts as asyncio's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import uvloop

from processors.deadline import Deadline, within
from processors.eager import start_eagerly


async def finishes_at_once() -> str:
    return "done"


async def sleeps(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def hangs(cancelled: asyncio.Event) -> None:
    """Waits forever; sets ``cancelled`` when its wait is cancelled."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise


async def fails_at_once() -> str:
    raise ValueError("bad input")


async def test_a_step_that_never_suspends_arms_no_timer():
    """A step finishing in its first run returns its value; the deadline was never armed."""
    deadline = Deadline(0.01)
    assert await within(finishes_at_once(), deadline) == "done"
    assert not deadline.armed and not deadline.expired()


async def test_a_suspending_step_returns_its_value_within_the_deadline():
    """A step that waits and finishes in time returns its value."""
    deadline = Deadline(5)
    assert await within(sleeps(0.01), deadline) == "slept"
    assert not deadline.expired()


async def test_a_step_past_its_deadline_times_out_and_is_cancelled():
    """A step still waiting at the deadline raises TimeoutError, and its coroutine is cancelled."""
    cancelled = asyncio.Event()
    deadline = Deadline(0.02)
    with pytest.raises(TimeoutError):
        await within(hangs(cancelled), deadline)
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


async def test_deadlines_of_many_steps_share_one_timer_and_each_keeps_its_own_time():
    """Steps of different timeouts, armed in any order: each step that never ends times out no
    earlier than its own timeout (less the loop's millisecond), a shorter timeout armed after a
    longer one included; each step released in time returns its value."""
    loop = asyncio.get_running_loop()
    release = asyncio.Event()

    async def never_ends() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    async def ends_on_release() -> str:
        await release.wait()
        return "released"

    async def timed(step: Any, timeout_s: float) -> tuple[str, float, float]:
        started = loop.time()
        try:
            value = await within(step, Deadline(timeout_s))
        except TimeoutError:
            value = "timeout"
        return value, timeout_s, loop.time() - started

    hanging = [0.2, 0.05, 0.12, 0.02, 0.08, 0.05]
    runs = [asyncio.create_task(timed(never_ends(), t)) for t in hanging]
    runs += [asyncio.create_task(timed(ends_on_release(), 5.0)) for _ in range(3)]
    runs += [asyncio.create_task(timed(ends_on_release(), 0.3)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*runs)
    for value, timeout_s, waited_s in results[:len(hanging)]:
        assert value == "timeout"
        assert timeout_s - 0.001 <= waited_s < timeout_s + 1.0  # not held back by another
    assert [value for value, _, _ in results[len(hanging):]] == ["released"] * 6


async def test_a_cancellation_of_the_caller_is_not_turned_into_a_timeout():
    """When the task is cancelled by its owner as well as by the deadline, the cancellation
    goes on as CancelledError (a stopping engine must stop), as asyncio.timeout does."""
    fired = asyncio.Event()

    async def cleans_up_slowly() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            fired.set()  # the deadline's cancellation arrived; the owner's comes meanwhile
            await asyncio.sleep(10)
            raise

    deadline = Deadline(0.01)
    task = asyncio.create_task(within(cleans_up_slowly(), deadline))
    await fired.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadline.expired()


async def test_a_step_that_swallows_the_cancellation_keeps_its_value_and_clears_it():
    """A step may catch the cancellation and return: its value comes back, the deadline says it
    expired, and the task is left with no cancellation pending."""
    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "kept"
        return "slept"

    deadline = Deadline(0.01)
    assert await within(stubborn(), deadline) == "kept"
    task = asyncio.current_task()
    assert deadline.expired() and task is not None and task.cancelling() == 0


async def test_an_ended_deadline_holds_no_reference_to_its_task():
    """Ended deadlines wait in their line until the timer passes them; they must not keep the
    finished tasks (and what their steps returned) alive meanwhile."""
    import gc
    import weakref

    deadline = Deadline(30)
    task = asyncio.create_task(within(sleeps(0.001), deadline))
    assert await task == "slept"
    await asyncio.sleep(0)  # the loop's wake-up of this test's task holds the task until then
    gone = weakref.ref(task)
    del task
    gc.collect()
    assert gone() is None and deadline.armed and not deadline.expired()


async def test_a_shorter_deadline_armed_later_is_not_held_back_by_a_longer_one():
    """The shared timer moves earlier for a deadline due before the one it waits for: a 20 ms
    deadline armed after a 3 s one fires long before 3 s."""
    async def never_ends() -> None:
        await asyncio.Event().wait()

    long_wait = asyncio.create_task(within(never_ends(), Deadline(3.0)))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await within(never_ends(), Deadline(0.02))
    assert loop.time() - started < 1.5  # the 3 s timer would have held it past 2.9 s
    long_wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_wait


async def test_a_step_already_waiting_is_awaited_under_a_deadline_armed_at_once():
    """A step run up to its first suspension, resumed under a deadline (``Resumed`` with the
    deadline as its bound): it comes back with the step's value, or times out at the deadline
    with the step cancelled."""
    from processors.eager import Resumed

    def started(step: Any, deadline: Deadline) -> Resumed:
        return Resumed(step, step.send(None), deadline)

    assert await started(sleeps(0.001), Deadline(5)) == "slept"
    cancelled = asyncio.Event()
    deadline = Deadline(0.02)
    with pytest.raises(TimeoutError):
        await started(hangs(cancelled), deadline)
    assert deadline.expired() and cancelled.is_set()


async def test_deadlines_that_end_in_order_do_not_pile_up():
    """Steps of one timeout that end in the order they started leave nothing in their line:
    a long timeout at a high rate must not hold every ended deadline until it expires."""
    release = [asyncio.Event() for _ in range(200)]

    async def waits_for(event: asyncio.Event) -> str:
        await event.wait()
        return "done"

    deadlines = [Deadline(600) for _ in release]
    runs = [asyncio.create_task(within(waits_for(e), d))
            for e, d in zip(release, deadlines, strict=True)]
    await asyncio.sleep(0)
    line = deadlines[0]._line
    assert line is not None and len(line) == len(release)
    for event in release:
        event.set()
        await asyncio.sleep(0)
    assert await asyncio.gather(*runs) == ["done"] * len(release)
    assert len(line) == 0


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_a_deadline_due_before_an_eager_runs_task_begins_still_times_the_step_out(loop_factory):
    """A step run on a caller's stack goes on in a task of its own; when the loop is held up
    past the deadline before that task's first step, the step still ends in TimeoutError, and
    the task is not cancelled from under it (uvloop runs due timers before queued callbacks)."""

    async def answer() -> str:
        try:
            return await within(sleeps(5), Deadline(0.0))
        except TimeoutError:
            return "timed out"

    async def main() -> str:
        task = start_eagerly(answer())
        assert task is not None
        time.sleep(0.01)  # the loop held up (a long run of records, a collection)
        return await asyncio.wait_for(task, 5)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == "timed out"


async def test_a_step_run_eagerly_from_a_callback_outside_any_task_gets_its_deadline():
    """An eager run started by a loop callback (a done callback that starts the next event)
    has no current task: the step that suspends still waits under its deadline, in the task
    that goes on with it."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[asyncio.Task[Any] | None] = loop.create_future()

    async def answer() -> str:
        try:
            return await within(sleeps(5), Deadline(0.05))
        except TimeoutError:
            return "timed out"

    loop.call_soon(lambda: started.set_result(start_eagerly(answer())))
    task = await asyncio.wait_for(started, 5)
    assert task is not None
    assert await asyncio.wait_for(task, 5) == "timed out"
