"""The reply composer: turns the analysis into reply text through a pluggable responder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.base import ExecutionKind, Stage
from processors.responders import Responder, TemplateResponder
from schemas.context import ProcessorContext

REPLY_KEY = "reply"


@dataclass(slots=True)
class ReplyProcessor:
    """Compose-stage step: ``{"reply": str, "responder": name}``.

    Sees only the data of analysis steps that succeeded (``context.analysis``). Raises what the
    responder raises (``TransientProcessorError`` is retried by the pipeline) and ``TypeError``
    when a responder returns something other than text.
    """

    responder: Responder = field(default_factory=TemplateResponder)
    name: str = "reply"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.COMPOSE
    timeout_s: float = 2.0

    @property
    def never_waits(self) -> bool:
        """Whether the responder's coroutine never suspends (the template responder's)."""
        return bool(getattr(self.responder, "never_waits", False))

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        text = await self.responder.respond(context)
        if not isinstance(text, str):
            raise TypeError(f"responder returned {type(text).__name__}, expected str")
        name = getattr(self.responder, "name", type(self.responder).__name__)
        return {REPLY_KEY: text, "responder": name}

    async def aclose(self) -> None:
        """Close the responder's resources (the OpenAI responder's HTTP client), if it has any."""
        closing = getattr(self.responder, "aclose", None)
        if closing is not None:
            await closing()
