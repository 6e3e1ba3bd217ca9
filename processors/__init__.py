"""Analysis steps and the pipeline that runs them (see ``processors.base`` for the contract)."""

from __future__ import annotations

from processors.base import (
    ExecutionKind,
    Processor,
    Stage,
    TransientProcessorError,
    UpdatesSession,
)
from processors.cache import ContextCache, run_cache_cleaner
from processors.emotion import EmotionProcessor
from processors.examples import TextStatsProcessor
from processors.memory import MemoryProcessor
from processors.pipeline import (
    NullObserver,
    PipelineObserver,
    PipelineResult,
    ProcessorPipeline,
    spawn_process_pool,
)
from processors.registry import (
    ProcessorRegistry,
    default_processors,
    default_registry,
    validate_processor,
)
from processors.reply import ReplyProcessor
from processors.resilience import BreakerState, CircuitBreaker, RetryPolicy
from processors.responders import (
    OpenAICompatibleResponder,
    Responder,
    ResponderError,
    TemplateResponder,
    responder_from_settings,
)
from processors.settings import PipelineSettings, ProcessorSettings
from processors.text import is_question
from processors.thread import ThreadProcessor, ThreadRules

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "ContextCache",
    "EmotionProcessor",
    "ExecutionKind",
    "MemoryProcessor",
    "NullObserver",
    "OpenAICompatibleResponder",
    "PipelineObserver",
    "PipelineResult",
    "PipelineSettings",
    "Processor",
    "ProcessorPipeline",
    "ProcessorRegistry",
    "ProcessorSettings",
    "ReplyProcessor",
    "Responder",
    "ResponderError",
    "RetryPolicy",
    "Stage",
    "TemplateResponder",
    "TextStatsProcessor",
    "ThreadProcessor",
    "ThreadRules",
    "TransientProcessorError",
    "UpdatesSession",
    "default_processors",
    "default_registry",
    "is_question",
    "responder_from_settings",
    "run_cache_cleaner",
    "spawn_process_pool",
    "validate_processor",
]
