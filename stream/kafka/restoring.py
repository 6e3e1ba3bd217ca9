"""Restoring the sessions of newly assigned partitions in the background.

aiokafka sends no heartbeats while the assignment callback runs (it restarts them once the
callback has returned), so a restore awaited there counts against the session timeout: a long
one gets the member evicted in the middle of it, to rejoin and restore again. The restore runs
in a task of its own instead, and its partitions are held (paused, whatever backpressure says)
until it ends, so none of their events is taken before their sessions are back.

Rules, in the order they apply:
1. A restore that fails is retried, with backoff, within its budget (the rebalance timeout).
   One still failing or unfinished when the budget has passed is logged, and its partitions
   are served with the sessions it installed (none, mostly): nothing is lost but history.
2. A hand-over or a stop cancels it (``cancel``): its partitions leave the hold without being
   resumed, as they are no longer this member's to serve.
3. Otherwise, once it ends, its partitions are let go (resumed unless backpressure is on) and
   ``on_done`` runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiokafka.structs import TopicPartition
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from stream.kafka.backpressure import Backpressure

__all__ = ["PartitionRestore"]

log = logging.getLogger(__name__)

# Beyond the budget: starting and stopping the restore's own consumer, which the budget of its
# read does not cover.
_CLIENT_GRACE_S = 5.0
_CANCEL_WAIT_S = 2.0  # a cancelled restore stops its consumer; a hand-over waits this long


class PartitionRestore:
    def __init__(self, restore: Callable[[Collection[TopicPartition]], Awaitable[Any]],
                 backpressure: Backpressure, budget_s: float,
                 on_done: Callable[[], None]) -> None:
        self._restore = restore
        self._backpressure = backpressure
        self._budget_s = budget_s
        self._on_done = on_done
        self._task: asyncio.Task[None] | None = None
        self.partitions: frozenset[TopicPartition] = frozenset()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, assigned: Collection[TopicPartition]) -> None:
        """Hold ``assigned`` and restore their sessions in a task (see the module docstring);
        a restore still running is cancelled first (rule 2)."""
        if self.running:
            assert self._task is not None
            self._task.cancel()
        self.partitions = frozenset(assigned)
        self._backpressure.hold(self.partitions)
        self._task = asyncio.create_task(self._run(self.partitions),
                                         name="chatstream-restore")

    async def cancel(self) -> None:
        """End a running restore without letting its partitions go (rule 2)."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_WAIT_S)

    async def wait(self) -> None:
        """Until the running restore (if any) has ended."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self, partitions: frozenset[TopicPartition]) -> None:
        try:
            async with asyncio.timeout(self._budget_s + _CLIENT_GRACE_S):
                await self._retried(partitions)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A restore started since (``start``) holds its own partitions again.
                superseded = task is not self._task
                self._backpressure.let_go(partitions - self.partitions if superseded
                                          else partitions, resume=False)
                raise
            # Nothing cancelled the restore: a cancellation of its own escaped from a client.
            log.error("restoring the sessions of %d partitions raised CancelledError: their "
                      "sessions start empty", len(partitions))
        except Exception:
            log.exception("restoring the sessions of %d partitions failed within %.1f s: "
                          "their sessions start empty", len(partitions), self._budget_s)
        self._backpressure.let_go(partitions)
        self._on_done()

    async def _retried(self, partitions: frozenset[TopicPartition]) -> None:
        def retrying(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("restoring the sessions of %d partitions failed (%r): trying again",
                        len(partitions), error)

        async for attempt in AsyncRetrying(retry=retry_if_exception_type(Exception),
                                           wait=wait_exponential(multiplier=0.2, max=2.0),
                                           stop=stop_after_delay(self._budget_s),
                                           before_sleep=retrying, reraise=True):
            with attempt:
                await self._restore(partitions)
