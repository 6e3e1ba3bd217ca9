"""Builds the engine the settings ask for: the concurrent manager or the basic path."""

from __future__ import annotations

from collections.abc import Sequence

from processors.base import Processor
from processors.cache import ContextCache
from processors.pipeline import ProcessorPipeline
from processors.registry import ProcessorRegistry, default_processors
from stream.basic import BasicEngine
from stream.manager import ConcurrentConversationManager
from stream.plugins import load_plugin_processors
from stream.settings import Settings
from stream.tracing import ProcessorSpans
from stream.work import Deliver


def build_pipeline(settings: Settings, processors: Sequence[Processor] | None = None
                   ) -> tuple[ProcessorPipeline, ContextCache]:
    """The default processors plus plugins (or exactly ``processors``), with pools and tracing."""
    cache = ContextCache(max_size=settings.context_cache_max_size,
                         ttl_seconds=settings.context_cache_ttl_seconds)
    if processors is None:
        registry = ProcessorRegistry(default_processors(settings, cache))
        for plugin in load_plugin_processors(settings):
            registry.register(plugin)
        processors = registry.processors()
    pipeline = ProcessorPipeline.from_settings(processors, settings, observer=ProcessorSpans())
    return pipeline, cache


def build_engine(settings: Settings, deliver: Deliver | None = None,
                 processors: Sequence[Processor] | None = None
                 ) -> ConcurrentConversationManager | BasicEngine:
    pipeline, cache = build_pipeline(settings, processors)
    if not settings.enable_concurrent_manager:
        return BasicEngine(settings, pipeline, deliver=deliver)
    return ConcurrentConversationManager(settings, pipeline, deliver=deliver, cache=cache)
