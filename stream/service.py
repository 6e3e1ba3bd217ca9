"""``chatstream run``: one consumer-group member, stopped gracefully by SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from infra.logs import configure_logging
from infra.telemetry import configure_tracing
from stream.engines import build_engine
from stream.runner import StreamRunner
from stream.settings import Settings

log = logging.getLogger(__name__)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def build_runner(settings: Settings) -> StreamRunner:
    return StreamRunner(settings, lambda deliver: build_engine(settings, deliver))


async def run_service(settings: Settings, stop: asyncio.Event | None = None,
                      runner: StreamRunner | None = None) -> StreamRunner:
    """Run until ``stop`` is set (by a signal when not given); return the finished runner."""
    configure_logging(settings.log_format, settings.log_level)
    provider = configure_tracing()
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    runner = runner or build_runner(settings)
    log.info("chatstream joining group %r on %s, topic %s", settings.group_id,
             settings.kafka_bootstrap_servers, settings.inbound_topic)
    http = None
    if settings.http_port is not None:
        from stream.http import start_http_server

        http = await start_http_server(settings, runner)
        runner.http_port = http.port
        log.info("serving /metrics, /stats, /healthz, /readyz on http://%s:%d",
                 settings.http_host, http.port)
    try:
        await runner.run(stop)
    finally:
        if http is not None:
            await http.close()
        if provider is not None:
            provider.shutdown()
    log.info("chatstream stopped: %d consumed, %d answered, %d dead-lettered",
             runner.counters.consumed, runner.counters.answered, runner.counters.dead_lettered)
    return runner
