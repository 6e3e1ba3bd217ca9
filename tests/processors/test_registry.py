from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from processors.base import ExecutionKind, Stage
from processors.cache import ContextCache
from processors.examples import TextStatsProcessor
from processors.pipeline import ProcessorPipeline
from processors.registry import ProcessorRegistry, default_processors, default_registry
from processors.responders import OpenAICompatibleResponder, TemplateResponder
from schemas.context import ProcessorContext
from stream.settings import load_settings


@dataclass
class Shout:
    name: str = "shout"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 1.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"loud": context.event.content.upper()}


@dataclass
class WhichThread:
    name: str = "which_thread"
    kind: ExecutionKind = ExecutionKind.THREAD
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 1.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        return {"thread": threading.current_thread().name}


async def test_custom_async_thread_and_process_processors_run(make_context):
    """Registered custom steps of each kind run in their place and their data is in outcomes."""
    settings = load_settings(responder="template", max_worker_processes=1, max_worker_threads=2)
    registry = default_registry(settings, ContextCache())
    for custom in (Shout(), WhichThread(), TextStatsProcessor(timeout_s=10)):
        assert registry.register(custom) is custom
    pipeline = ProcessorPipeline.from_settings(registry.processors(), settings)
    try:
        await pipeline.warm_up()
        reply, outcomes, degraded = await pipeline.run(make_context("Hi there. All good?"))
    finally:
        pipeline.close()
    assert degraded == [] and reply
    assert outcomes["shout"].data == {"loud": "HI THERE. ALL GOOD?"}
    assert outcomes["which_thread"].data["thread"].startswith("chatstream-step")
    assert outcomes["text_stats"].data["words"] == 4
    assert outcomes["text_stats"].data["sentences"] == 2


def test_registry_keeps_order_and_rejects_duplicates():
    """Names are unique; order of registration is kept; unregister removes by name."""
    registry = ProcessorRegistry([Shout(), WhichThread()])
    assert registry.names() == ["shout", "which_thread"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Shout())
    assert isinstance(registry.unregister("shout"), Shout)
    assert "shout" not in registry and len(registry) == 1


class NotAProcessor:
    name = "nope"


@dataclass
class SyncButAsync(Shout):
    name: str = "sync"

    def process(self, context: ProcessorContext) -> dict[str, Any]:  # type: ignore[override]
        return {}


def _local_process_processor() -> Any:
    @dataclass
    class Local(TextStatsProcessor):
        name: str = "local"

    return Local()


@pytest.mark.parametrize(
    ("candidate", "error", "match"),
    [
        (NotAProcessor(), TypeError, "not a Processor"),
        (SyncButAsync(), TypeError, "async def"),
        (WhichThread(kind=ExecutionKind.ASYNC), TypeError, "async def"),
        (Shout(timeout_s=0), ValueError, "positive"),
        (Shout(name=""), ValueError, "non-empty"),
        (Shout(stage="analysis"), TypeError, "Stage"),  # type: ignore[arg-type]
        (_local_process_processor(), ValueError, "picklable"),
    ],
)
def test_register_validates_the_contract(candidate, error, match):
    """Contract violations are refused at registration with a message naming the problem."""
    with pytest.raises(error, match=match):
        ProcessorRegistry().register(candidate)


def test_default_processors_and_openai_reply_timeout():
    """Defaults are emotion/memory/thread/reply; the OpenAI reply step gets the HTTP timeout."""
    cache = ContextCache()
    steps = default_processors(load_settings(responder="template", processor_timeout_seconds=1.5), cache)
    assert [(s.name, s.kind) for s in steps] == [
        ("emotion", ExecutionKind.PROCESS), ("memory", ExecutionKind.THREAD),
        ("thread", ExecutionKind.ASYNC), ("reply", ExecutionKind.ASYNC)]
    assert all(s.timeout_s == 1.5 for s in steps)
    assert steps[1].cache is cache
    assert isinstance(steps[3].responder, TemplateResponder)
    openai = default_processors(load_settings(responder="openai", openai_timeout_seconds=8), cache)
    assert isinstance(openai[3].responder, OpenAICompatibleResponder)
    assert openai[3].timeout_s == 8.5
