"""HTTP endpoints of a running member: /metrics, /stats, /healthz, /readyz."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream.kafka.member import StreamRunner
from stream.observability.metrics import RunnerCollector, engine_stats
from stream.settings import Settings


class HttpServer:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    async def close(self) -> None:
        await self._runner.cleanup()


def stats_document(runner: StreamRunner) -> dict[str, Any]:
    """The engine's performance stats (pools and processors as in ``engine_stats``) plus the
    Kafka side (counters, assignment, lag)."""
    counters = runner.counters.as_dict()
    return {
        **(engine_stats(runner.engine) if runner.engine is not None else {}),
        "kafka": {
            "group_id": runner.settings.group_id,
            "ready": runner.ready.is_set(),
            "assigned_partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in runner.assignment),
            "counters": dict(counters),
            "lag": {f"{tp.topic}[{tp.partition}]": lag.offsets for tp, lag in runner.lag().items()},
        },
    }


def build_app(runner: StreamRunner, registry: CollectorRegistry) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(stats_document(runner)),
                            content_type="application/json")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        ready = runner.ready.is_set()
        return web.json_response({"ready": ready, "partitions": len(runner.assignment)},
                                 status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_http_server(settings: Settings, runner: StreamRunner,
                            registry: CollectorRegistry | None = None) -> HttpServer:
    """Serve on CHATSTREAM_HTTP_HOST:CHATSTREAM_HTTP_PORT (port 0 picks a free one).

    ``registry`` holds the runner's latency histograms, if it was built with them."""
    registry = registry or CollectorRegistry()
    registry.register(RunnerCollector(runner))
    app_runner = web.AppRunner(build_app(runner, registry), access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, settings.http_host, settings.http_port or 0)
    await site.start()
    port = app_runner.addresses[0][1] if app_runner.addresses else settings.http_port or 0
    return HttpServer(app_runner, int(port))
