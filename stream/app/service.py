"""``chatstream run``: one consumer-group member, stopped gracefully by SIGINT or SIGTERM.

``Service`` composes what one member process runs: the member (``StreamRunner``, whose engine
hands every event to the Kafka sink) and, with ``CHATSTREAM_HTTP_PORT`` set, the HTTP endpoints
with the latency histograms the sink feeds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from infra.logs import configure_logging
from infra.telemetry import TelemetryConfigError, configure_tracing
from stream.app.wiring import build_engine
from stream.kafka.member import StreamRunner
from stream.observability.metrics import LatencyMetrics
from stream.settings import EventLoopChoice, Settings, SettingsError

__all__ = ["Service", "install_stop_signals", "loop_factory", "run_member", "run_on_loop",
           "run_service", "tune_garbage_collector"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def tune_garbage_collector(young_threshold: int) -> None:
    """For a member process (not for library users' processes): what is loaded by now stays
    out of every collection (``gc.freeze``), and the youngest generation is collected every
    ``young_threshold`` allocations instead of 700. Each event allocates dozens of short-lived
    containers: with the default, collections ran every few events (a quarter of a member's
    time in an early profile of ``chatstream bench passthrough``). Fewer, larger collections
    also traverse the surviving objects less often: draining 20,000 events through the full
    pipeline spent 0.19-0.22 s in collections with 10,000, 0.11-0.12 s with 25,000 and 0.06 s
    with 50,000 (of 4.3 s of CPU). The cost is the cyclic garbage (from the Kafka client) left
    between collections: the peak RSS growth under tests/reliability/test_overload.py was
    32-35 MB with 10,000, 39-40 MB with 25,000 and 43-44 MB with 50,000 (its limit is 50 MB).
    The older generations keep Python's ratios. 0 keeps Python's defaults."""
    gc.freeze()
    if young_threshold > 0:
        gc.set_threshold(young_threshold, 10, 10)


def run_member(settings: Settings) -> None:
    """Run one member process to its end, on the event loop ``settings.event_loop`` names."""
    tune_garbage_collector(settings.gc_young_threshold)
    run_on_loop(run_service(settings), settings.event_loop)
    exit_past_stuck_steps()


# Idle pool workers end within moments of their pool's shutdown; one still running after this
# runs a step that timed out and never returned.
_WORKERS_END_S = 1.0


def exit_past_stuck_steps(grace_s: float = _WORKERS_END_S) -> None:
    """After a stop (answers committed, clients closed): if a step that never returned still
    holds a worker thread, end the worker processes and leave without waiting for it. The
    interpreter's exit joins every pool thread, so one stuck step would keep the process (and
    its supervisor) from ever exiting after SIGTERM. Returns when nothing is stuck."""
    deadline = time.monotonic() + grace_s
    for thread in _pool_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in _pool_threads() if thread.is_alive()]
    if not stuck:
        return
    children = multiprocessing.active_children()
    log.warning("exiting with %d steps still running (threads %s), %d worker processes "
                "ended", len(stuck), ", ".join(stuck), len(children))
    for child in children:
        child.terminate()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _pool_threads() -> list[threading.Thread]:
    # Non-daemon threads other than the main one: the pools' workers (and a process pool's
    # manager thread, which waits for its running calls).
    return [thread for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon]


def run_on_loop(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """``asyncio.run(main)`` on the chosen event loop (``loop_factory``)."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop (None: asyncio's own). uvloop's timers, sockets and
    callbacks cost less than asyncio's: on ``chatstream bench io-bound``, where every event
    waits on a timer, it raised a member's rate by about a tenth (passthrough: a few percent).
    ``auto`` falls back to asyncio's loop where uvloop is not installed (it does not build on
    Windows)."""
    if choice is EventLoopChoice.ASYNCIO:
        return None
    try:
        import uvloop
    except ImportError:
        if choice is EventLoopChoice.UVLOOP:
            raise RuntimeError("CHATSTREAM_EVENT_LOOP=uvloop, but uvloop is not installed: "
                               "pip install uvloop, or set CHATSTREAM_EVENT_LOOP=auto") from None
        return None
    return uvloop.new_event_loop


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


class Service:
    """One member process. ``http_port`` resolves with the port the endpoints serve on (port 0
    in the settings picks a free one); it is never resolved without ``CHATSTREAM_HTTP_PORT``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        observer = LatencyMetrics(self.registry) if settings.http_port is not None else None
        self.runner = StreamRunner(settings, lambda sink: build_engine(settings, sink),
                                   latency_observer=observer)
        self.http_port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def run(self, stop: asyncio.Event | None = None) -> StreamRunner:
        """Run until ``stop`` is set (by a signal when not given); return the finished runner."""
        settings, runner = self.settings, self.runner
        configure_logging(settings.log_format, settings.log_level)
        try:
            provider = configure_tracing()
        except TelemetryConfigError as exc:  # exits 2 with one line, as a bad setting does
            raise SettingsError(str(exc)) from None
        if stop is None:
            stop = asyncio.Event()
            install_stop_signals(stop)
        http = None
        if settings.http_port is not None:
            from stream.observability.http import start_http_server

            http = await start_http_server(settings, runner, self.registry)
            log.info("serving /metrics, /stats, /healthz, /readyz on http://%s:%d",
                     settings.http_host, http.port)
            self.http_port.set_result(http.port)
        try:
            await runner.run(stop)
        finally:
            if http is not None:
                await http.close()
            if provider is not None:
                provider.shutdown()
        log.info("chatstream stopped: %d consumed, %d answered, %d dead-lettered",
                 runner.counters.consumed, runner.counters.answered,
                 runner.counters.dead_lettered)
        return runner


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> StreamRunner:
    """Build and run one ``Service`` (see ``Service.run``)."""
    return await Service(settings).run(stop)
