"""A stop's budget: the wait for a restore still running to end counts within the shutdown
timeout, not on top of it (its bound, SHUTDOWN_GRACE_S, covers only the steps after the drain)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stream.kafka.member import SHUTDOWN_GRACE_S, StreamRunner
from stream.settings import load_settings

_RESTORE_ENDS_S = 1.0


class _SlowRestore:
    """A membership whose restore takes a while to end once cancelled."""

    async def close(self) -> None:
        await asyncio.sleep(_RESTORE_ENDS_S)


class _Backlog:
    """An engine and sink with work that never drains: every wait runs to its timeout."""

    buffered = 10
    in_flight = 0

    def __init__(self) -> None:
        self.drain_timeouts: list[float] = []

    async def drain(self, timeout_s: float) -> bool:
        self.drain_timeouts.append(timeout_s)
        await asyncio.sleep(timeout_s)
        return False

    async def stop(self, timeout_s: float | None = None) -> None:
        return None

    async def flush(self, timeout_s: float) -> bool:
        return True

    async def wait_for_dead_letters(self, timeout_s: float) -> None:
        return None

    async def close(self) -> None:
        return None


class _Consumer:
    def assignment(self) -> set[Any]:
        return set()

    def pause(self, *_: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


async def _no_commit(*_: Any, **__: Any) -> None:
    return None


async def test_the_wait_for_a_restore_to_end_counts_within_the_shutdown_timeout():
    settings = load_settings().model_copy(update={"shutdown_timeout_seconds": 2.0})
    runner = StreamRunner(settings, lambda sink: _Backlog())  # type: ignore[arg-type,return-value]
    backlog = _Backlog()
    runner.engine = runner._sink = backlog  # type: ignore[assignment]
    runner._membership = _SlowRestore()  # type: ignore[assignment]
    runner.commit = _no_commit  # type: ignore[method-assign]
    started = time.monotonic()
    await runner._shut_down(_Consumer())  # type: ignore[arg-type]
    took = time.monotonic() - started
    (drain_s,) = backlog.drain_timeouts
    # The drain gets what the restore's end left of the timeout.
    assert drain_s <= settings.shutdown_timeout_seconds - _RESTORE_ENDS_S + 0.01
    assert took < settings.shutdown_timeout_seconds + SHUTDOWN_GRACE_S
