"""Builds the engine the settings ask for: the concurrent manager or the basic path."""

from __future__ import annotations

from collections.abc import Sequence

from processors.base import Processor
from processors.cache import ContextCache
from processors.pipeline import ProcessorPipeline
from processors.registry import default_processors
from stream.basic import BasicEngine
from stream.manager import ConcurrentConversationManager
from stream.settings import Settings
from stream.work import Deliver


def build_pipeline(settings: Settings, processors: Sequence[Processor] | None = None,
                   cache: ContextCache | None = None) -> tuple[ProcessorPipeline, ContextCache]:
    cache = cache or ContextCache(max_size=settings.context_cache_max_size,
                                  ttl_seconds=settings.context_cache_ttl_seconds)
    chosen = list(processors) if processors is not None else default_processors(settings, cache)
    return ProcessorPipeline.from_settings(chosen, settings), cache


def build_engine(settings: Settings, deliver: Deliver | None = None,
                 processors: Sequence[Processor] | None = None
                 ) -> ConcurrentConversationManager | BasicEngine:
    pipeline, cache = build_pipeline(settings, processors)
    if not settings.enable_concurrent_manager:
        return BasicEngine(settings, pipeline, deliver=deliver)
    return ConcurrentConversationManager(settings, pipeline, deliver=deliver,
                                         cache=cache)
