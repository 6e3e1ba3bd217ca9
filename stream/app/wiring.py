"""Wiring: the processors, the pipeline and the engine the settings ask for.

The journey of one event is composed here and in ``stream.kafka.member``: consumer -> engine
(concurrent or sequential) -> sink (``KafkaSink``: publish or dead-letter) -> commit ledger.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Sequence

from processors.base import ExecutionKind, Processor
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

log = logging.getLogger(__name__)


def build_pipeline(settings: Settings, processors: Sequence[Processor] | None = None
                   ) -> tuple[ProcessorPipeline, ContextCache]:
    """The default processors plus plugins (or exactly ``processors``), with pools and tracing."""
    cache = ContextCache(max_size=settings.context_cache_max_size,
                         ttl_seconds=settings.context_cache_ttl_seconds)
    if processors is None:
        processors = selected_processors(settings, cache)
    # Read as given: processors passed in directly are validated by the pipeline, after this.
    log.info("steps: %s", ", ".join(
        f"{p.name} ({getattr(p.stage, 'value', p.stage)}, {getattr(p.kind, 'value', p.kind)})"
        for p in processors) or "none")
    observer = ProcessorSpans() if tracing_on() else None
    pipeline = ProcessorPipeline.from_settings(processors, settings, observer=observer)
    return pipeline, cache


# Where the built-ins run unless CHATSTREAM_PROCESSOR_KINDS moves them: VADER and the memory
# index take microseconds, a pool hop hundreds. A plugin replacing one keeps its own kind.
_BUILT_IN_KINDS = {"emotion": ExecutionKind.INLINE, "memory": ExecutionKind.INLINE}


def selected_processors(settings: Settings, cache: ContextCache) -> list[Processor]:
    """The built-ins named by CHATSTREAM_PROCESSORS, then the plugins' processors; a plugin
    processor named like a built-in takes its place; CHATSTREAM_PROCESSOR_KINDS may move a
    step between the loop and the pools. Raises ``SettingsError`` for an unknown built-in name,
    a plugin processor that breaks the contract or repeats a name, and a kinds entry that
    names no step or a kind that does not fit the step."""
    names = [name.strip() for name in settings.builtin_processors.split(",") if name.strip()]
    try:
        builtins = default_processors(settings, cache, names)
    except ValueError as exc:
        raise SettingsError(f"invalid CHATSTREAM_PROCESSORS: {exc}") from None
    plugins = load_plugin_processors(settings)
    repeated = sorted(name for name, n in Counter(p.name for p in plugins).items() if n > 1)
    if repeated:
        raise SettingsError(f"invalid CHATSTREAM_PROCESSOR_PLUGINS: more than one processor "
                            f"named {', '.join(map(repr, repeated))}")
    replacing = {plugin.name: plugin for plugin in plugins}
    chosen = [replacing.pop(b.name) if b.name in replacing
              else _with_kind(b, _BUILT_IN_KINDS.get(b.name)) for b in builtins]
    chosen += replacing.values()  # in a replaced built-in's place, or after them all
    kinds = _kinds(settings.processor_kinds)
    unknown = sorted(set(kinds) - {p.name for p in chosen})
    if unknown:
        raise SettingsError(
            f"CHATSTREAM_PROCESSOR_KINDS names {', '.join(map(repr, unknown))}, which do not "
            f"run here; the steps are: {', '.join(p.name for p in chosen) or 'none'}")
    registry = ProcessorRegistry()
    for processor in chosen:
        try:
            registry.register(_with_kind(processor, kinds.get(processor.name)))
        except (TypeError, ValueError) as exc:  # a pool the step cannot be sent to, mostly
            raise SettingsError(f"CHATSTREAM_PROCESSOR_KINDS: {exc}") from None
    return registry.processors()


def _kinds(text: str) -> dict[str, ExecutionKind]:
    kinds: dict[str, ExecutionKind] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, kind = entry.partition("=")
        try:
            kinds[name.strip()] = ExecutionKind(kind.strip())
        except ValueError:
            raise SettingsError(
                f"invalid CHATSTREAM_PROCESSOR_KINDS entry {entry!r}: expected name=kind with "
                f"kind one of {', '.join(k.value for k in ExecutionKind)}") from None
    return kinds


def _with_kind(processor: Processor, kind: ExecutionKind | None) -> Processor:
    """``processor`` set to run as ``kind`` (itself when None or unchanged); a kind that does
    not fit its ``process`` (a coroutine runs only as async) is a configuration error."""
    if kind is None or kind is processor.kind:
        return processor
    if (kind is ExecutionKind.ASYNC) != (processor.kind is ExecutionKind.ASYNC):
        raise SettingsError(f"CHATSTREAM_PROCESSOR_KINDS: {processor.name} cannot run as "
                            f"{kind.value} (its process() is {processor.kind.value})")
    changed = copy.copy(processor)
    object.__setattr__(changed, "kind", kind)
    return changed


def build_engine(settings: Settings, sink: Sink | None = None,
                 processors: Sequence[Processor] | None = None
                 ) -> ConcurrentConversationManager | BasicEngine:
    """The engine for ``settings``, handing every event to ``sink`` (a ``WaiterSink`` when
    None, as the Python API uses)."""
    pipeline, cache = build_pipeline(settings, processors)
    if not settings.enable_concurrent_manager:
        return BasicEngine(settings, pipeline, sink=sink)
    return ConcurrentConversationManager(settings, pipeline, sink=sink, cache=cache)
