"""Processor plugins the benchmarks load through CHATSTREAM_PROCESSOR_PLUGINS.

``io_step``: an analysis step that stands for a remote call (a database, an LLM API): it waits
``CHATSTREAM_BENCH_IO_MS`` milliseconds, times U(1 - j, 1 + j) with j =
``CHATSTREAM_BENCH_IO_JITTER`` (0 by default; 0 ms still suspends once). Read from the
environment because a plugin factory receives only the service's settings.

``inline_step`` and ``instant_step``: the same lookup with no wait at all, as an inline step
and as an async step that never suspends; what a step costs the engine apart from waiting.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from processors.base import ExecutionKind, Stage
from schemas.context import ProcessorContext

__all__ = ["InlineLookup", "InstantLookup", "SimulatedLookup", "inline_step", "instant_step",
           "io_step"]


class SimulatedLookup:
    name = "lookup"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS

    def __init__(self, latency_s: float, jitter: float = 0.0) -> None:
        self.latency_s = latency_s
        self.jitter = jitter
        self.timeout_s = latency_s * (1 + jitter) * 10 + 1

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        spread = random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        await asyncio.sleep(self.latency_s * spread)
        return {"looked_up": True}


def io_step(settings: Any) -> list[SimulatedLookup]:
    latency_ms = float(os.environ.get("CHATSTREAM_BENCH_IO_MS", "20"))
    jitter = float(os.environ.get("CHATSTREAM_BENCH_IO_JITTER", "0"))
    return [SimulatedLookup(latency_ms / 1000, jitter)]


class InlineLookup:
    name = "lookup"
    kind = ExecutionKind.INLINE
    stage = Stage.ANALYSIS
    timeout_s = 1.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"looked_up": True}


class InstantLookup:
    name = "lookup"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS
    timeout_s = 1.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"looked_up": True}


def inline_step(settings: Any) -> list[InlineLookup]:
    return [InlineLookup()]


def instant_step(settings: Any) -> list[InstantLookup]:
    return [InstantLookup()]
