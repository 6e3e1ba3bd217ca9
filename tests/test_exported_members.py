"""The public surface of each package is pinned: a name that disappears fails here first."""

from __future__ import annotations

import importlib
import types

import pytest

PUBLIC = {
    "stream": {
        "ConversationManagerAPI", "Settings", "SettingsError",
        "create_concurrent_conversation_manager", "load_settings",
    },
    "processors": {
        "BreakerState", "CircuitBreaker", "ContextCache", "EmotionProcessor", "ExecutionKind",
        "MemoryProcessor", "NullObserver", "OpenAICompatibleResponder", "PipelineObserver",
        "PipelineResult", "PipelineSettings", "Processor", "ProcessorPipeline",
        "ProcessorRegistry", "ProcessorSettings", "ReplyProcessor", "Responder",
        "ResponderError", "RetryPolicy", "Stage", "TemplateResponder", "TextStatsProcessor",
        "ThreadProcessor", "ThreadRules", "TransientProcessorError", "UpdatesSession",
        "default_processors", "default_registry", "is_question", "responder_from_settings",
        "run_cache_cleaner", "spawn_process_pool", "validate_processor",
    },
    "schemas": {
        "ChatEvent", "DecodeError", "HistoryMessage", "InputLimits", "MessageType", "Priority",
        "ProcessorContext", "ProcessorOutcome", "ProcessorStatus", "ResponseEvent",
        "SessionSnapshot", "SessionUpdate", "decode_event", "encode", "response_id_for",
    },
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_lists_exactly_the_pinned_names(package):
    """``__all__`` neither loses a pinned name nor gains one that is not pinned here."""
    module = importlib.import_module(package)
    assert set(module.__all__) == PUBLIC[package]


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_listed_name_exists(package):
    """Each name in ``__all__`` is importable from the package itself."""
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_attribute_is_listed(package):
    """A public, non-module attribute of the package is in ``__all__`` (no accidental API)."""
    module = importlib.import_module(package)
    public = {name for name, value in vars(module).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name != "annotations"}
    assert public <= set(module.__all__)
