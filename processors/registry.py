"""Which processors run, and the one validated way to add custom ones.

Adding a processor::

    registry = default_registry(settings, cache)
    registry.register(TextStatsProcessor())          # processors.examples
    pipeline = ProcessorPipeline.from_settings(registry.processors(), settings)

``register`` checks the contract up front so a mistake fails at start-up, not on the first event.
"""

from __future__ import annotations

import inspect
import math
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from processors.base import ExecutionKind, Processor, Stage
from processors.cache import ContextCache
from processors.emotion import EmotionProcessor
from processors.memory import MemoryProcessor
from processors.reply import ReplyProcessor
from processors.responders import responder_from_settings
from processors.thread import ThreadProcessor

if TYPE_CHECKING:
    from processors.settings import ProcessorSettings

P = TypeVar("P", bound=Processor)


def validate_processor(processor: object) -> None:
    """Raise ``TypeError``/``ValueError`` naming what breaks the ``Processor`` contract."""
    if isinstance(processor, type):  # its attributes pass, but process() lacks its self
        raise TypeError(f"{processor.__name__} is a class, not a Processor: pass an instance")
    if not isinstance(processor, Processor):
        missing = [name for name in ("name", "kind", "stage", "timeout_s", "process")
                   if not hasattr(processor, name)]
        raise TypeError(
            f"{type(processor).__name__} is not a Processor: it lacks {', '.join(missing)} "
            "(a Processor has name, kind, stage, timeout_s and process(context))"
        )
    if not isinstance(processor.name, str) or not processor.name:
        raise ValueError("a processor name must be a non-empty string")
    if not isinstance(processor.kind, ExecutionKind) or not isinstance(processor.stage, Stage):
        raise TypeError(f"{processor.name}: kind must be an ExecutionKind, stage a Stage")
    timeout = processor.timeout_s
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
        math.isfinite(timeout) and timeout > 0
    ):
        raise ValueError(f"{processor.name}: timeout_s must be a positive number, got {timeout!r}")
    is_coroutine = inspect.iscoroutinefunction(processor.process)
    if (processor.kind is ExecutionKind.ASYNC) != is_coroutine:
        raise TypeError(
            f"{processor.name}: process must be `async def` exactly when kind is ASYNC"
        )
    if processor.kind is ExecutionKind.PROCESS:
        _check_picklable(processor)


def _check_picklable(processor: Processor) -> None:
    # A spawned worker re-imports the class by module path; __main__ is not the same module there.
    if type(processor).__module__ == "__main__":
        raise ValueError(
            f"{processor.name}: a PROCESS processor's class must live in an importable module, "
            "not __main__"
        )
    try:
        pickle.loads(pickle.dumps(processor))
    except Exception as exc:
        raise ValueError(
            f"{processor.name}: a PROCESS processor must be picklable ({type(exc).__name__}: "
            f"{exc})"
        ) from None


class ProcessorRegistry:
    """An ordered set of processors with unique names; every entry passed ``validate_processor``.
    Order is kept: compose processors run in registration order."""

    def __init__(self, processors: Iterable[Processor] = ()) -> None:
        self._processors: dict[str, Processor] = {}
        for processor in processors:
            self.register(processor)

    def register(self, processor: P) -> P:
        """Validate and add ``processor``; returns it. Raises ``ValueError`` on a duplicate name."""
        validate_processor(processor)
        if processor.name in self._processors:
            raise ValueError(f"a processor named {processor.name!r} is already registered")
        self._processors[processor.name] = processor
        return processor

    def unregister(self, name: str) -> Processor:
        """Remove and return the processor called ``name`` (``KeyError`` if absent)."""
        return self._processors.pop(name)

    def processors(self) -> list[Processor]:
        """The processors, in registration order."""
        return list(self._processors.values())

    def names(self) -> list[str]:
        return list(self._processors)

    def __contains__(self, name: object) -> bool:
        return name in self._processors

    def __iter__(self) -> Iterator[Processor]:
        return iter(self.processors())

    def __len__(self) -> int:
        return len(self._processors)


BUILTIN_PROCESSORS = ("emotion", "memory", "thread", "reply")


def default_processors(settings: ProcessorSettings, cache: ContextCache,
                       names: Iterable[str] = BUILTIN_PROCESSORS) -> list[Processor]:
    """The built-in processors called ``names``, in their fixed order: emotion, memory (uses
    ``cache``), thread (async), reply (async, compose). Emotion and memory declare a process
    and a thread; ``CHATSTREAM_PROCESSOR_KINDS`` (inline for both by default) decides where
    they run.
    Raises ``ValueError`` for a name that is not a built-in.

    Every step gets CHATSTREAM_PROCESSOR_TIMEOUT_SECONDS, except the reply step with the OpenAI
    responder, which gets at least CHATSTREAM_OPENAI_TIMEOUT_SECONDS (an HTTP call is slower).
    """
    timeout = settings.processor_timeout_seconds
    reply_timeout = timeout
    if settings.responder == "openai":
        reply_timeout = max(timeout, settings.openai_timeout_seconds + 0.5)
    wanted = set(names)
    unknown = sorted(wanted - set(BUILTIN_PROCESSORS))
    if unknown:
        raise ValueError(f"unknown built-in processors {unknown}; known: "
                         f"{', '.join(BUILTIN_PROCESSORS)}")
    makers: dict[str, Callable[[], Processor]] = {
        "emotion": lambda: EmotionProcessor(timeout_s=timeout),
        "memory": lambda: MemoryProcessor(cache, timeout_s=timeout),
        "thread": lambda: ThreadProcessor(timeout_s=timeout),
        "reply": lambda: ReplyProcessor(responder_from_settings(settings),
                                        timeout_s=reply_timeout),
    }
    return [makers[name]() for name in BUILTIN_PROCESSORS if name in wanted]


def default_registry(settings: ProcessorSettings, cache: ContextCache) -> ProcessorRegistry:
    """A registry holding ``default_processors``, ready for ``register`` of custom ones."""
    return ProcessorRegistry(default_processors(settings, cache))
