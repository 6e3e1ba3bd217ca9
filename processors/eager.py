"""Running a coroutine by hand up to its first suspension: no task and no timer for work that
never waits.

Most events in a member whose steps run on the loop finish without suspending once: a task
per event would cost its creation, a trip through the loop's ready queue and a done callback,
for nothing. ``start_eagerly`` runs the coroutine at once, in a context of its own (as a task
would), and only if it suspends hands the rest to a task (``Resumed`` forwards what the task
sends and throws in, as ``await`` does). Python 3.12's eager task factory does the same.

What binds to "the current task" while the first part runs (a step's deadline, which cancels
that task when it fires) must bind to the task that goes on with the coroutine, not to the
caller's: ``bind_to_own_task`` defers such a binding until that task exists.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol

__all__ = ["Bound", "Resumed", "bind_to_own_task", "start_eagerly"]

_local = threading.local()  # each thread runs one loop at a time: its eager run is found here


def start_eagerly(step: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``step`` now; None if it finished (its result is dropped), else the task that runs
    the rest. An exception raised before the first suspension propagates to the caller."""
    context = contextvars.copy_context()
    outer = getattr(_local, "bindings", None)  # a run started inside another's first part
    bindings: list[Callable[[asyncio.Task[Any]], None]] = []
    _local.bindings = bindings
    try:
        suspended_on = context.run(step.send, None)
    except StopIteration:
        return None
    finally:
        _local.bindings = outer
    task = asyncio.get_running_loop().create_task(_rest(Resumed(step, suspended_on)),
                                                  context=context)
    for bind in bindings:
        bind(task)
    return task


def bind_to_own_task(bind: Callable[[asyncio.Task[Any]], None]) -> bool:
    """Inside the first part of a ``start_eagerly`` run: ``bind`` is called with the task that
    goes on with it, once the run suspends (before the loop runs anything else), and True is
    returned. Elsewhere False: the current task is the coroutine's own."""
    bindings: list[Callable[[asyncio.Task[Any]], None]] | None = getattr(
        _local, "bindings", None)
    if bindings is None:
        return False
    bindings.append(bind)
    return True


async def _rest(resumed: Resumed) -> Any:
    return await resumed


class Bound(Protocol):
    """What a ``Resumed`` step waits under (a deadline): entered when the wait goes on, left
    with how it ended (None: a value); ``leave`` may name the error to raise instead."""

    def enter(self) -> None: ...

    def leave(self, error: BaseException | None) -> BaseException | None: ...


class Resumed:
    """The rest of a coroutine already run up to its first suspension, as an awaitable: it
    hands the event loop what the coroutine yielded and forwards what comes back (a value, an
    exception such as a cancellation, or a close), as ``await`` itself does. Under a ``bound``,
    entered when awaited and left when the coroutine ends: one frame for both, as every frame of
    a waiting chain is resumed at each of its wake-ups."""

    __slots__ = ("_bound", "_first", "_step")

    def __init__(self, step: Coroutine[Any, Any, Any], first: Any,
                 bound: Bound | None = None) -> None:
        self._step = step
        self._first = first
        self._bound = bound

    def close(self) -> None:
        """Close the coroutine, for a caller that will not await this after all."""
        self._step.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        step, to_yield, bound = self._step, self._first, self._bound
        if bound is not None:
            try:
                bound.enter()
            except BaseException:
                step.close()
                raise
        try:
            while True:
                try:
                    sent = yield to_yield
                except GeneratorExit:
                    step.close()
                    raise
                except BaseException as exc:  # thrown in by the task: a cancellation, mostly
                    try:
                        to_yield = step.throw(exc)
                    except StopIteration as done:
                        value = done.value
                        break
                else:
                    try:
                        to_yield = step.send(sent)
                    except StopIteration as done:
                        value = done.value
                        break
        except BaseException as error:
            if bound is not None and (instead := bound.leave(error)) is not None:
                raise instead from error
            raise
        if bound is not None:
            bound.leave(None)
        return value
