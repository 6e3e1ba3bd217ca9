from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from processors.base import TransientProcessorError
from processors.reply import ReplyProcessor
from processors.responders import (
    OpenAICompatibleResponder,
    ResponderError,
    TemplateResponder,
    responder_from_settings,
)
from stream.settings import load_settings

KEY = "sk-test-SECRET-123"
NEGATIVE = {"emotion": {"label": "negative", "escalating": False}}


class FakeOpenAI(BaseHTTPRequestHandler):
    """OpenAI-shaped endpoint; the first path segment picks the behaviour."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = self.headers.get("Authorization", "")
        FakeOpenAI.requests.append({"path": self.path, "body": body, "auth": auth})
        mode = self.path.split("/")[1]
        if mode == "slow":
            time.sleep(1.0)
        status = {"fail500": 500, "limit": 429, "bad": 401}.get(mode, 200)
        if status == 200:
            reply = {"choices": [{"message": {"role": "assistant", "content": " Hello there! "}}]}
        else:
            # Echo the credential back, as some proxies do: it must not leak into our errors.
            reply = {"error": {"message": f"rejected credential {auth}"}}
        payload = json.dumps(reply).encode()
        # The slow case's client has given up by now; a broken pipe is expected there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _responder(base: str, mode: str, timeout_s: float = 2.0) -> OpenAICompatibleResponder:
    return OpenAICompatibleResponder(f"{base}/{mode}/v1", "test-model", KEY, timeout_s)


async def test_template_reply_differs_by_emotion(make_context):
    """Positive, negative and escalating analyses give different wording."""
    responder = TemplateResponder()
    text = "The app crashed when I saved my draft"
    replies = {
        label: await responder.respond(make_context(text, analysis={"emotion": emotion}))
        for label, emotion in {
            "positive": {"label": "positive"},
            "negative": {"label": "negative"},
            "escalating": {"label": "negative", "escalating": True},
        }.items()
    }
    assert len(set(replies.values())) == 3
    assert "sorry" in replies["negative"].lower()
    assert "frustrating" in replies["escalating"].lower()


async def test_template_references_memory_thread_and_question(make_context):
    """A related earlier message is quoted, a new topic acknowledged, a question answered."""
    analysis = {
        "memory": {"related": [{"event_id": "e1", "content": "my order 1234 is late", "score": 0.6}]},
        "thread": {"new_thread": True, "reason": "marker"},
    }
    reply = await TemplateResponder().respond(
        make_context("btw, where is my order?", analysis=analysis)
    )
    assert '"my order 1234 is late"' in reply
    assert "new topic" in reply
    assert "Good question" in reply


async def test_template_works_without_analysis(make_context):
    """With every analysis step degraded the reply is still a sensible sentence."""
    assert await TemplateResponder().respond(make_context("hi")) == (
        "Thanks for your message. I've noted that."
    )


async def test_reply_processor_wraps_responder(make_context):
    """ReplyProcessor returns the responder's text under 'reply' and names the responder."""
    data = await ReplyProcessor().process(make_context("thanks!", analysis=NEGATIVE))
    assert data["responder"] == "template"
    assert data["reply"].startswith("I'm sorry")


async def test_openai_success_sends_model_prompt_and_bearer(server, make_context):
    """A 200 answer yields the stripped content; the request carries model, prompt and key."""
    responder = _responder(server, "ok")
    try:
        text = await responder.respond(make_context("my order is late", analysis=NEGATIVE))
    finally:
        await responder.aclose()
    assert text == "Hello there!"
    sent = FakeOpenAI.requests[-1]
    assert sent["path"] == "/ok/v1/chat/completions"
    assert sent["auth"] == f"Bearer {KEY}"
    assert sent["body"]["model"] == "test-model"
    system, user = sent["body"]["messages"]
    assert "unhappy" in system["content"]
    assert user == {"role": "user", "content": "my order is late"}


@pytest.mark.parametrize("mode", ["fail500", "limit"])
async def test_openai_5xx_and_429_are_transient(server, make_context, mode):
    """HTTP 500 and 429 raise TransientProcessorError (retried by the pipeline)."""
    responder = _responder(server, mode)
    with pytest.raises(TransientProcessorError) as info:
        await responder.respond(make_context("hi"))
    await responder.aclose()
    assert KEY not in str(info.value)


async def test_openai_timeout_is_transient(server, make_context):
    """A server slower than timeout_s raises TransientProcessorError once timeout_s has passed,
    not when the server answers."""
    responder = _responder(server, "slow", timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(TransientProcessorError, match="timed out"):
        await responder.respond(make_context("hi"))
    # Raising at all shows the client gave up before the server's answer at 1 s.
    assert time.monotonic() - started >= 0.2
    await responder.aclose()


async def test_openai_client_error_is_clear_and_redacted(server, make_context):
    """A 401 raises ResponderError naming the status, with the echoed key redacted."""
    responder = _responder(server, "bad")
    with pytest.raises(ResponderError, match="HTTP 401") as info:
        await responder.respond(make_context("hi"))
    await responder.aclose()
    assert KEY not in str(info.value)
    assert "***" in str(info.value)
    assert KEY not in repr(responder)


async def test_openai_connection_refused_is_transient(make_context):
    """No listener on the loopback port -> TransientProcessorError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    responder = OpenAICompatibleResponder(f"http://127.0.0.1:{port}/v1", "m", KEY, 1.0)
    with pytest.raises(TransientProcessorError, match="ConnectError"):
        await responder.respond(make_context("hi"))
    await responder.aclose()


def test_responder_from_settings():
    """CHATSTREAM_RESPONDER selects the template or the OpenAI-compatible responder."""
    assert isinstance(responder_from_settings(load_settings(responder="template")), TemplateResponder)
    chosen = responder_from_settings(
        load_settings(responder="openai", openai_base_url="http://127.0.0.1:9/v1/", openai_api_key=KEY)
    )
    assert isinstance(chosen, OpenAICompatibleResponder)
    assert chosen.url == "http://127.0.0.1:9/v1/chat/completions"
