"""An LLM reply as a processor plugin: chatstream's analysis runs as usual, then this compose
step asks an OpenAI-compatible API (OpenAI, vLLM, llama.cpp, Ollama...) for the reply.

    PYTHONPATH=. CHATSTREAM_PROCESSOR_PLUGINS="examples.llm_processor:processors" \\
    CHATSTREAM_OPENAI_BASE_URL=http://127.0.0.1:8000/v1 CHATSTREAM_OPENAI_MODEL=my-model \\
    chatstream run

It reads CHATSTREAM_OPENAI_BASE_URL, _MODEL, _API_KEY and _TIMEOUT_SECONDS. Compose steps run
in order and a later one's reply wins, so this step, registered after the built-in template
reply, overrides it; when the API fails or times out (after the pipeline's retries), the step
is named in the response's ``degraded`` and the template reply stands: the event is still
answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.base import ExecutionKind, Stage
from processors.reply import REPLY_KEY
from processors.responders import OpenAICompatibleResponder
from processors.settings import ProcessorSettings
from schemas.context import ProcessorContext


@dataclass(slots=True)
class LLMReply:
    """Compose step: ``{"reply": text, "model": name}`` from one chat completion. Raises what
    the responder raises: ``TransientProcessorError`` (retried) or ``ResponderError``."""

    responder: OpenAICompatibleResponder
    name: str = "llm_reply"
    kind: ExecutionKind = ExecutionKind.ASYNC
    stage: Stage = Stage.COMPOSE
    timeout_s: float = 10.5

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        # The responder's prompt carries the analysis: tone, thread changes, related messages.
        return {REPLY_KEY: await self.responder.respond(context), "model": self.responder.model}


def processors(settings: ProcessorSettings) -> list[LLMReply]:
    """The plugin factory: chatstream calls it once at start with its settings."""
    key = settings.openai_api_key
    responder = OpenAICompatibleResponder(
        settings.openai_base_url, settings.openai_model,
        key.get_secret_value() if key else None, settings.openai_timeout_seconds)
    # The step's limit covers the pipeline's retries too; half a second above one call's
    # timeout, as the built-in reply step has, lets a slow call fail as a timeout of the call.
    return [LLMReply(responder, timeout_s=settings.openai_timeout_seconds + 0.5)]
