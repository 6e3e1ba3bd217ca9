"""Wiring: the processors, the pipeline and the engine the settings ask for.

The journey of one event is composed here and in ``stream.kafka.member``: consumer -> engine
(concurrent or sequential) -> sink (``KafkaSink``: publish or dead-letter) -> commit ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.base import Processor
from processors.cache import ContextCache
from processors.pipeline import ProcessorPipeline
from processors.registry import ProcessorRegistry, default_processors
from stream.app.plugins import load_plugin_processors
from stream.engine.concurrent import ConcurrentConversationManager
from stream.engine.sequential import BasicEngine
from stream.engine.sink import Sink
from stream.observability.tracing import ProcessorSpans, tracing_on
from stream.settings import Settings, SettingsError

__all__ = ["build_engine", "build_pipeline", "selected_processors"]


def build_pipeline(settings: Settings, processors: Sequence[Processor] | None = None
                   ) -> tuple[ProcessorPipeline, ContextCache]:
    """The default processors plus plugins (or exactly ``processors``), with pools and tracing."""
    cache = ContextCache(max_size=settings.context_cache_max_size,
                         ttl_seconds=settings.context_cache_ttl_seconds)
    if processors is None:
        processors = selected_processors(settings, cache)
    observer = ProcessorSpans() if tracing_on() else None
    pipeline = ProcessorPipeline.from_settings(processors, settings, observer=observer)
    return pipeline, cache


def selected_processors(settings: Settings, cache: ContextCache) -> list[Processor]:
    """The built-ins named by CHATSTREAM_PROCESSORS, then the plugins' processors; a plugin
    processor named like a built-in takes its place. Raises ``SettingsError`` for an unknown
    built-in name."""
    names = [name.strip() for name in settings.builtin_processors.split(",") if name.strip()]
    try:
        builtins = default_processors(settings, cache, names)
    except ValueError as exc:
        raise SettingsError(f"invalid CHATSTREAM_PROCESSORS: {exc}") from None
    plugins = load_plugin_processors(settings)
    replaced = {plugin.name for plugin in plugins}
    registry = ProcessorRegistry(p for p in builtins if p.name not in replaced)
    for plugin in plugins:
        registry.register(plugin)
    return registry.processors()


def build_engine(settings: Settings, sink: Sink | None = None,
                 processors: Sequence[Processor] | None = None
                 ) -> ConcurrentConversationManager | BasicEngine:
    """The engine for ``settings``, handing every event to ``sink`` (a ``WaiterSink`` when
    None, as the Python API uses)."""
    pipeline, cache = build_pipeline(settings, processors)
    if not settings.enable_concurrent_manager:
        return BasicEngine(settings, pipeline, sink=sink)
    return ConcurrentConversationManager(settings, pipeline, sink=sink, cache=cache)
