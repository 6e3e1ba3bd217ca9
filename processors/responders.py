"""Reply backends: a deterministic template responder and an OpenAI-compatible HTTP client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from processors.base import TransientProcessorError
from processors.text import is_question
from schemas.context import ProcessorContext

if TYPE_CHECKING:
    from processors.settings import ProcessorSettings

class ResponderError(Exception):
    """A reply backend failure that retrying will not fix (bad request, auth, malformed body)."""


@runtime_checkable
class Responder(Protocol):
    """Turns a compose-stage context into reply text. May raise ``TransientProcessorError``
    (retried by the pipeline) or any other exception (the reply step fails)."""

    async def respond(self, context: ProcessorContext) -> str: ...


# The templates' phrases by label: module constants, not literals built on every reply.
_OPENINGS = {"negative": "I'm sorry to hear that.", "positive": "Great to hear!"}
_THREAD_NOTES = {
    "idle_gap": "Welcome back!",
    "marker": "Sure, let's switch to this new topic.",
    "topic_shift": "Sounds like a new topic; happy to help with it.",
}
_ANSWERS = {
    "negative": "Could you tell me a bit more so I can help?",
    "positive": "Is there anything else I can help with?",
}
_NOTHING: Mapping[str, Any] = {}  # one empty section for all (a Mapping: read only)


def _section(context: ProcessorContext, name: str) -> Mapping[str, Any]:
    return context.analysis.get(name) or _NOTHING


def _opening(emotion: Mapping[str, Any]) -> str:
    if emotion.get("escalating"):
        return "I'm really sorry this keeps getting more frustrating; let's get it sorted together."
    label = str(emotion.get("label"))
    if label == "positive" and float(emotion.get("compound", 0.0)) < 0.5:
        label = "neutral"  # "help" or "thanks" alone make VADER mildly positive: no cheering
    return _OPENINGS.get(label, "Thanks for your message.")


def _thread_note(thread: Mapping[str, Any]) -> str:
    return _THREAD_NOTES.get(str(thread.get("reason")), "")


def _memory_note(memory: Mapping[str, Any]) -> str:
    related = memory.get("related") or []
    if not related:
        return ""
    snippet = " ".join(str(related[0].get("content", "")).split())
    if len(snippet) > 80:
        snippet = snippet[:77].rstrip() + "..."
    return f'This sounds related to what you mentioned earlier: "{snippet}".'


def _answer(content: str, label: str) -> str:
    if is_question(content):
        return "Good question. I'm looking into it and will get back to you with an answer."
    return _ANSWERS.get(label, "I've noted that.")


class TemplateResponder:
    """Deterministic replies built from the analysis; works with any subset of it missing
    (degraded analysis steps simply contribute nothing). Never blocks, never raises."""

    name = "template"
    never_waits = True  # builds the text at once; never suspends

    async def respond(self, context: ProcessorContext) -> str:
        emotion = _section(context, "emotion")
        # A cheerful "new topic" note reads as dismissive to someone who is upset.
        upset = emotion.get("label") == "negative"
        parts = [
            "" if upset else _thread_note(_section(context, "thread")),
            _opening(emotion),
            _memory_note(_section(context, "memory")),
            _answer(context.event.content, str(emotion.get("label", "neutral"))),
        ]
        return " ".join([part for part in parts if part])


def system_prompt(context: ProcessorContext) -> str:
    """Instructions for the model, derived from the analysis (pure)."""
    emotion = _section(context, "emotion")
    thread = _section(context, "thread")
    lines = ["You are a helpful, concise chat assistant. Answer in at most three sentences."]
    if emotion.get("escalating"):
        lines.append("The user is getting increasingly upset: be calm, empathetic and concrete.")
    elif emotion.get("label") == "negative":
        lines.append("The user sounds unhappy: acknowledge it briefly and kindly.")
    if thread.get("new_thread") and thread.get("reason") != "first":
        lines.append("The user has just started a new topic; do not continue the previous one.")
    for item in (_section(context, "memory").get("related") or [])[:3]:
        lines.append(f"Earlier the user said: {item.get('content', '')!r}")
    return "\n".join(lines)


class OpenAICompatibleResponder:
    """POSTs ``{base_url}/chat/completions`` and returns the first choice's message content.

    Blocks only on the network, bounded by ``timeout_s``. Raises ``TransientProcessorError`` on
    timeouts, connection errors, HTTP 429 and 5xx; ``ResponderError`` on other 4xx and on
    malformed answers. The API key is sent as a Bearer token and never appears in a repr, a log
    line or an exception's text. Call ``aclose()`` when done; the client is created lazily on the
    event loop of the first call.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        *,
        max_tokens: int = 300,
        temperature: float = 0.3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._api_key = api_key
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleResponder(url={self.url!r}, model={self.model!r})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        return self._client

    def payload(self, context: ProcessorContext) -> dict[str, Any]:
        """The request body (pure)."""
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system_prompt(context)},
                {"role": "user", "content": context.event.content},
            ],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    async def respond(self, context: ProcessorContext) -> str:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = await self._http().post(
                self.url, json=self.payload(context), headers=headers
            )
        except httpx.TimeoutException:
            raise TransientProcessorError(f"timed out after {self.timeout_s}s: {self.url}") from None
        except httpx.TransportError as exc:
            # ``from None``: the httpx exception carries the request, headers and key included.
            raise TransientProcessorError(f"{type(exc).__name__} calling {self.url}") from None
        self._check_status(response)
        return self._content(response)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientProcessorError(f"HTTP {status} from {self.url}")
        if status >= 400:
            detail = self._redact(response.text[:200].strip())
            raise ResponderError(f"HTTP {status} from {self.url}: {detail}")

    def _content(self, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise ResponderError(f"malformed chat completion from {self.url}") from None
        if not isinstance(content, str) or not content.strip():
            raise ResponderError(f"empty chat completion from {self.url}")
        return content.strip()

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def responder_from_settings(settings: ProcessorSettings) -> Responder:
    """The responder chosen by ``CHATSTREAM_RESPONDER`` (template | openai)."""
    if settings.responder == "openai":
        key = settings.openai_api_key
        return OpenAICompatibleResponder(
            settings.openai_base_url,
            settings.openai_model,
            key.get_secret_value() if key else None,
            settings.openai_timeout_seconds,
        )
    return TemplateResponder()
