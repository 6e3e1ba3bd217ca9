"""Pool figures in /stats and /metrics come from the pipeline's executors, not guesses."""

from __future__ import annotations

import asyncio
import threading

from processors.base import ExecutionKind, Stage
from schemas.events import ChatEvent
from stream.app.wiring import build_engine
from stream.devtools.bots import event_for
from stream.observability.metrics import engine_stats, pool_usage
from stream.settings import load_settings


class Blocking:
    """A thread processor that holds its worker until released."""

    name, kind, stage, timeout_s = "blocking", ExecutionKind.THREAD, Stage.ANALYSIS, 10.0

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Event()

    def process(self, context):
        self.started.release()
        self.release.wait(10)
        return {}


async def test_thread_pool_busy_counts_running_calls():
    """Three calls on a two-thread pool: 2 busy, 1 queued, utilization 1; then all idle."""
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:1", max_worker_threads=2,
                             max_worker_processes=1)
    blocking = Blocking()
    engine = build_engine(settings, processors=[blocking])
    await engine.start()
    futures = [asyncio.get_running_loop().create_future() for _ in range(3)]
    for i, waiter in enumerate(futures):
        engine.submit(ChatEvent.model_validate(event_for("b", "c", f"u{i}", "hi")), waiter=waiter)
    for _ in range(2):
        await asyncio.to_thread(blocking.started.acquire, timeout=5)
    busy = pool_usage(engine)["thread"]
    blocking.release.set()
    await asyncio.gather(*futures)
    idle = engine_stats(engine)
    await engine.stop(timeout_s=0.5)

    assert busy == {"workers": 2, "busy": 2, "queued": 1, "utilization": 1.0}
    assert idle["pools"]["thread"]["busy"] == 0
    assert idle["pools"]["process"] == {"workers": 1, "busy": 0, "queued": 0, "utilization": 0.0}
    assert idle["processors"]["blocking"]["ok"] == 3
