"""A plugin whose reply step is named like the built-in one, to replace it."""

from __future__ import annotations

from typing import Any

from processors.base import ExecutionKind, Stage


class EchoReply:
    name, kind, stage, timeout_s = "reply", ExecutionKind.ASYNC, Stage.COMPOSE, 2.0

    async def process(self, context: Any) -> dict[str, Any]:
        return {"reply": f"echo: {context.event.content}"}


def processors(settings: Any) -> list[Any]:
    return [EchoReply()]
