"""examples/llm_processor.py: a valid plugin whose compose step answers through an
OpenAI-compatible API, and whose failure leaves the template reply in place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiohttp import web

from examples.llm_processor import processors
from processors import ProcessorPipeline, ReplyProcessor, RetryPolicy, TemplateResponder
from processors.base import ExecutionKind, Stage
from processors.registry import validate_processor
from schemas.context import ProcessorContext, SessionSnapshot
from schemas.events import ChatEvent
from stream.app.plugins import load_plugin_processors
from stream.settings import Settings, load_settings

REPLY = "Hello from the fake model."


class FakeOpenAI:
    """POST /{mode}/v1/chat/completions on a free loopback port; mode "down" answers 503."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"body": await request.json(),
                              "auth": request.headers.get("Authorization", "")})
        if request.match_info["mode"] == "down":
            return web.json_response({"error": "overloaded"}, status=503)
        return web.json_response({"choices": [{"message": {"role": "assistant",
                                                           "content": REPLY}}]})


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/{mode}/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def _settings(base_url: str) -> Settings:
    return load_settings(openai_base_url=base_url, openai_model="fake-model",
                         openai_api_key="sk-example", openai_timeout_seconds=2.0,
                         processor_plugins="examples.llm_processor:processors")


def _context(content: str) -> ProcessorContext:
    event = ChatEvent(event_id="e1", bot_id="b", channel_id="c", user_id="u", content=content)
    return ProcessorContext(event=event, session=SessionSnapshot(session_id="b/c/u"))


def test_the_factory_returns_one_valid_compose_step():
    """The factory's processors pass the registry's contract check; one async compose step."""
    made = processors(_settings("http://127.0.0.1:9/v1"))
    for processor in made:
        validate_processor(processor)
    assert [(p.name, p.kind, p.stage) for p in made] == [
        ("llm_reply", ExecutionKind.ASYNC, Stage.COMPOSE)]
    assert made[0].timeout_s == pytest.approx(2.5)


def test_chatstream_loads_it_from_the_plugin_setting():
    """CHATSTREAM_PROCESSOR_PLUGINS="examples.llm_processor:processors" yields the step."""
    loaded = load_plugin_processors(_settings("http://127.0.0.1:9/v1"))
    assert [p.name for p in loaded] == ["llm_reply"]


async def test_the_step_returns_the_reply_of_the_api(fake_openai):
    """The compose step posts the conversation to the API and returns its reply."""
    [step] = processors(_settings(f"{fake_openai.base}/ok/v1"))
    data = await step.process(_context("where is my parcel?"))
    assert data == {"reply": REPLY, "model": "fake-model"}
    [request] = fake_openai.requests
    assert request["body"]["model"] == "fake-model"
    assert request["body"]["messages"][-1] == {"role": "user", "content": "where is my parcel?"}
    assert request["auth"] == "Bearer sk-example"


@pytest.mark.parametrize(("mode", "llm_answers"), [("ok", True), ("down", False)])
async def test_its_reply_wins_and_its_failure_keeps_the_template(fake_openai, mode, llm_answers):
    """After the template reply, the API's reply wins; when the API fails, the template's
    reply stands and the step is named in degraded."""
    settings = _settings(f"{fake_openai.base}/{mode}/v1")
    pipeline = ProcessorPipeline([ReplyProcessor(TemplateResponder()), *processors(settings)],
                                 ThreadPoolExecutor(1), ThreadPoolExecutor(1),
                                 retry_policy=RetryPolicy(retries=0))
    try:
        reply, _, degraded = await pipeline.run(_context("thanks, that helped"))
    finally:
        pipeline.close()
    assert (reply == REPLY) is llm_answers
    assert degraded == ([] if llm_answers else ["llm_reply"])
    assert reply
