"""Steps that suspend run in the event's own task: their deadlines and cancel scopes bind there,
never to the task that submitted the event (the member's loop, a rebalance callback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from processors.base import ExecutionKind, Stage, TransientProcessorError
from processors.reply import ReplyProcessor
from processors.responders import OpenAICompatibleResponder
from processors.thread import ThreadProcessor
from schemas.events import ChatEvent, ProcessorStatus
from stream import create_concurrent_conversation_manager
from stream.devtools.bots import event_for


class Slow:
    name = "slow"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS
    timeout_s = 0.2

    async def process(self, context: Any) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        return {"ok": True}


async def test_a_step_past_its_deadline_times_out_and_its_caller_goes_on():
    """Two events of one session through a step that outlives its 0.2 s timeout: both time
    out near 0.2 s each, and no calling task is cancelled in their place."""
    manager = await create_concurrent_conversation_manager(processors=[Slow()])
    try:
        async with asyncio.timeout(10):
            first, second = await asyncio.gather(*(
                manager.process_conversation_message(user_id="u", channel_id="c",
                                                     content=f"hi {n}", bot_id="b")
                for n in range(2)))
    finally:
        await manager.stop()
    for response in (first, second):
        assert response.analysis["slow"].status is ProcessorStatus.TIMEOUT
        assert response.analysis["slow"].duration_ms < 900


async def test_a_reply_from_an_http_model_goes_through_the_engine():
    """The OpenAI-compatible responder (httpx, anyio cancel scopes) answers through the
    concurrent engine from a local server."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                await asyncio.sleep(0.01)
                body = json.dumps({"choices": [{"message": {"content": "hello there"}}]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    responder = OpenAICompatibleResponder(f"http://127.0.0.1:{port}/v1", "m", timeout_s=10)
    manager = await create_concurrent_conversation_manager(
        processors=[ThreadProcessor(), ReplyProcessor(responder=responder)])
    try:
        async with asyncio.timeout(20):
            responses = await asyncio.gather(*(
                manager.process_conversation_message(user_id="u", channel_id=f"c{n % 2}",
                                                     content=f"hi {n}", bot_id="b")
                for n in range(4)))
    finally:
        await manager.stop()
        await responder.aclose()
        server.close()
    for response in responses:
        assert response.analysis["reply"].status is ProcessorStatus.OK, \
            response.analysis["reply"].error
        assert response.reply == "hello there"


def test_only_pipelines_whose_steps_never_wait_run_events_on_the_callers_stack():
    from processors.pipeline import ProcessorPipeline

    def pipeline(*steps: Any) -> ProcessorPipeline:
        return ProcessorPipeline(steps, None, None)  # type: ignore[arg-type]

    assert pipeline(ThreadProcessor(), ReplyProcessor()).never_waits
    assert not pipeline(ThreadProcessor(), ReplyProcessor(
        responder=OpenAICompatibleResponder("http://127.0.0.1:9/v1", "m"))).never_waits
    assert not pipeline(Slow(), ReplyProcessor()).never_waits


class FlakyInline:
    """An INLINE step whose every attempt fails transiently: its retries wait (backoff), so
    its event suspends although no step's kind says it would."""

    name = "flaky"
    kind = ExecutionKind.INLINE
    stage = Stage.ANALYSIS
    timeout_s = 0.02  # shorter than the first backoff (at least 50 ms)

    def __init__(self) -> None:
        self.calls = 0

    def process(self, context: Any) -> dict[str, Any]:
        self.calls += 1
        raise TransientProcessorError("upstream hiccup")


async def test_an_inline_step_waiting_on_its_retry_times_out_in_its_own_task():
    """A pipeline of steps that never wait runs its events on the caller's stack; a transient
    failure there waits for its retry, and the step's deadline must cancel that event's
    work, not the task that submitted it."""
    flaky = FlakyInline()
    manager = await create_concurrent_conversation_manager(
        processors=[flaky, ReplyProcessor()], processor_retries=2)
    try:
        assert manager.engine._eager  # the path under test: events start on this stack
        async with asyncio.timeout(10):
            responses = [await manager.process_conversation_message(
                user_id="u", channel_id="c", content=f"hi {n}", bot_id="b") for n in range(3)]
            await asyncio.sleep(0.1)  # past every backoff: a stray deadline would fire here
    finally:
        await manager.stop()
    for response in responses:
        assert response.analysis["flaky"].status is ProcessorStatus.TIMEOUT
        assert response.analysis["reply"].status is ProcessorStatus.OK
        assert response.degraded == ["flaky"]
    assert flaky.calls == 3  # one attempt each: the deadline came before any retry


async def test_an_event_gone_on_to_a_task_cancelled_before_its_first_step_still_ends():
    """An event started on the caller's stack whose step then waits goes on in a task; a stop
    may cancel that task before its first step (the task's body never runs). The event must
    still end, failed, with its lane freed, as one of a task started for it does."""
    manager = await create_concurrent_conversation_manager(
        processors=[FlakyInline(), ReplyProcessor()], processor_retries=2)
    engine = manager.engine
    assert engine._eager
    waiter = asyncio.get_running_loop().create_future()
    engine.submit(ChatEvent.model_validate(event_for("b", "c", "u", "hi")), waiter=waiter)
    (task,) = engine._running  # the task going on with the event, not started yet
    task.cancel()  # what stop() does past its drain timeout, here before the task's first step
    async with asyncio.timeout(10):
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    assert waiter.done() and engine.buffered == 0 and engine.in_flight == 0
    await manager.stop()
