"""Plugins that replace the built-ins which run inline by default, and plugins with mistakes."""

from __future__ import annotations

from typing import Any

from processors.base import ExecutionKind, Stage


class BlockingMemory:
    """A memory step that blocks (a database call): it belongs in the thread pool."""

    name, kind, stage, timeout_s = "memory", ExecutionKind.THREAD, Stage.ANALYSIS, 2.0

    def process(self, context: Any) -> dict[str, Any]:
        return {"found": []}


class AsyncEmotion:
    name, kind, stage, timeout_s = "emotion", ExecutionKind.ASYNC, Stage.ANALYSIS, 2.0

    async def process(self, context: Any) -> dict[str, Any]:
        return {"label": "neutral"}


def replacements(settings: Any) -> list[Any]:
    return [BlockingMemory(), AsyncEmotion()]


def not_processors(settings: Any) -> list[Any]:
    return ["memory"]


def a_class(settings: Any) -> list[Any]:
    return [BlockingMemory]


def twice(settings: Any) -> list[Any]:
    return [AsyncEmotion(), AsyncEmotion()]
