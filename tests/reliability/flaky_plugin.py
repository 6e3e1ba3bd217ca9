"""Processors that misbehave on purpose, loaded into real workers through
CHATSTREAM_PROCESSOR_PLUGINS (with tests/reliability on PYTHONPATH).

``flaky_plugin:processors``  ``flaky`` fails 40 % of calls (seeded): a third of those raise
                             TransientProcessorError (retried), a third RuntimeError, a third hang
                             past the timeout; ``storm`` fails every call for a few seconds
                             after its 100th call, then recovers (opens, then closes, its breaker).
``flaky_plugin:slow``        ``slow`` sleeps a fixed time per call, to slow a worker down.
``flaky_plugin:stuck``       ``stuck``, a THREAD step whose first call never returns (its
                             worker thread blocked for good); later calls return at once.

Knobs come from the worker's environment (read once, at the factory call).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from processors.base import ExecutionKind, Stage, TransientProcessorError
from schemas.context import ProcessorContext

FAILURE_SHARE = 0.40
SEED = int(os.environ.get("FLAKY_SEED", "1234"))
TIMEOUT_S = 0.3
STORM_AFTER_CALLS = 100
STORM_SECONDS = float(os.environ.get("FLAKY_STORM_SECONDS", "2.0"))
SLOW_SECONDS = float(os.environ.get("SLOW_PROCESSOR_SECONDS", "0.02"))


@dataclass
class Flaky:
    """Fails ``FAILURE_SHARE`` of its calls, cycling through the three ways of failing."""

    name: str = "flaky"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = TIMEOUT_S
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        roll = self.rng.random()
        share = FAILURE_SHARE / 3
        if roll < share:
            raise TransientProcessorError("upstream hiccup")
        if roll < 2 * share:
            raise RuntimeError("flaky processor broke")
        if roll < 3 * share:
            await asyncio.sleep(self.timeout_s * 10)  # hangs: the pipeline's deadline cancels it
        return {"roll": round(roll, 4)}


@dataclass
class Storm:
    """Healthy, except for ``STORM_SECONDS`` after its ``STORM_AFTER_CALLS``-th call."""

    name: str = "storm"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = TIMEOUT_S
    calls: int = 0
    storm_started: float | None = None

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        self.calls += 1
        if self.calls == STORM_AFTER_CALLS:
            self.storm_started = time.monotonic()
        if self.storm_started is not None and time.monotonic() < self.storm_started + STORM_SECONDS:
            raise RuntimeError("storm: dependency down")
        return {"calls": self.calls}


@dataclass
class Slow:
    """Takes ``SLOW_SECONDS`` per call without using CPU (an I/O-bound dependency)."""

    name: str = "slow"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 5.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        await asyncio.sleep(SLOW_SECONDS)
        return {"slept_s": SLOW_SECONDS}


@dataclass
class Stuck:
    """A THREAD step whose first call blocks its worker thread for good (a hung driver)."""

    name: str = "stuck"
    kind: ExecutionKind = ExecutionKind.THREAD
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = TIMEOUT_S
    calls: int = 0
    never: threading.Event = field(default_factory=threading.Event)

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        self.calls += 1  # one worker thread at a time reaches the first call
        if self.calls == 1:
            self.never.wait()
        return {"calls": self.calls}


def processors(settings: object) -> list[Any]:
    return [Flaky(), Storm()]


def slow(settings: object) -> list[Any]:
    return [Slow()]


def stuck(settings: object) -> list[Any]:
    return [Stuck()]
