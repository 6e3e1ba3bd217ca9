"""The concurrent conversation manager, driven through its Python API (no Kafka)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from processors.base import ExecutionKind, Stage
from schemas.context import ProcessorContext
from schemas.events import ChatEvent, Priority
from stream import create_concurrent_conversation_manager
from stream.devtools.bots import event_for
from stream.engine.answer import StrayCancellation
from stream.engine.sessions import SessionState
from stream.kafka.records import RecordSource


class SleepyProcessor:
    """An I/O-bound analysis step: waits, then reports what it saw of the session."""

    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS

    def __init__(self, delay_s: float, name: str = "sleepy", timeout_s: float = 5.0) -> None:
        self.name = name
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self.started: list[str] = []
        self.active: dict[str, int] = defaultdict(int)
        self.max_active_per_session = 0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        session = context.session.session_id
        self.started.append(context.event.event_id)
        self.active[session] += 1
        self.max_active_per_session = max(self.max_active_per_session, self.active[session])
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.active[session] -= 1
        return {"history": [m.content for m in context.session.recent_messages]}


class StuckProcessor:
    """Never finishes on its own: stands for a hung dependency."""

    name = "stuck"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS
    timeout_s = 600.0

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}


async def _manager(processor: Any, **settings: Any):
    return await create_concurrent_conversation_manager(processors=[processor], **settings)


class GateProcessor:
    """An I/O-bound step that waits until ``expected`` events are inside it at once: it ends
    only if that many run side by side (otherwise its timeout degrades every event)."""

    name = "gate"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS

    def __init__(self, expected: int, timeout_s: float) -> None:
        self.expected = expected
        self.timeout_s = timeout_s
        self.inside = 0
        self.opened = asyncio.Event()

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        self.inside += 1
        try:
            if self.inside == self.expected:
                self.opened.set()
            await self.opened.wait()
        finally:
            self.inside -= 1
        return {}


async def test_thousand_sessions_run_their_waiting_steps_side_by_side():
    """1000 sessions with an I/O step: all 1000 steps wait at the same time (not one after
    another), however slow the machine; so the batch takes one step's wait, not 1000."""
    processor = GateProcessor(1000, timeout_s=10.0)
    manager = await _manager(processor, max_in_flight=1000, max_concurrent_sessions=1000)
    try:
        async with asyncio.timeout(30):  # fewer side by side: each wave waits out the 10 s
            responses = await asyncio.gather(*(
                manager.process_conversation_message(user_id=f"u{i}", channel_id=f"c{i % 50}",
                                                     content="hello", bot_id="b")
                for i in range(1000)
            ))
    finally:
        await manager.stop()
    assert processor.opened.is_set(), "never 1000 steps waiting at once"
    assert len(responses) == 1000 and all(not r.degraded for r in responses)


async def test_one_session_is_processed_in_order_one_at_a_time():
    """Messages of one session run one at a time, in order, each seeing the earlier ones."""
    processor = SleepyProcessor(0.01)
    manager = await _manager(processor, max_in_flight=64)
    contents = [f"message {i}" for i in range(20)]
    responses = await asyncio.gather(*(
        manager.process_conversation_message(user_id="u", channel_id="c", content=text,
                                             bot_id="b", event_id=f"e{i}")
        for i, text in enumerate(contents)
    ))
    await manager.stop()
    assert processor.started == [f"e{i}" for i in range(20)]
    assert processor.max_active_per_session == 1
    assert responses[-1].analysis["sleepy"].data["history"][-3:] == contents[-4:-1]


async def test_sessions_never_see_each_other():
    """Two users in one channel have separate histories."""
    processor = SleepyProcessor(0.0)
    manager = await _manager(processor)
    for i in range(3):
        await manager.process_conversation_message(user_id="alice", channel_id="c",
                                                   content=f"alice {i}", bot_id="b")
        await manager.process_conversation_message(user_id="bob", channel_id="c",
                                                   content=f"bob {i}", bot_id="b")
    last = await manager.process_conversation_message(user_id="bob", channel_id="c",
                                                      content="bob again", bot_id="b")
    await manager.stop()
    assert last.analysis["sleepy"].data["history"] == ["bob 0", "bob 1", "bob 2"]


async def test_critical_overtakes_queued_normal_work():
    """With one slot, a critical event queued after many normal ones runs next."""
    processor = SleepyProcessor(0.02)
    manager = await _manager(processor, max_in_flight=1)
    normal = [asyncio.ensure_future(manager.process_conversation_message(
        user_id=f"u{i}", channel_id="c", content="hi", bot_id="b", event_id=f"n{i}"))
        for i in range(10)]
    await asyncio.sleep(0)
    critical = asyncio.ensure_future(manager.process_conversation_message(
        user_id="x", channel_id="c", content="hi", bot_id="b", event_id="crit",
        priority=Priority.CRITICAL))
    await asyncio.gather(*normal, critical)
    await manager.stop()
    assert processor.started.index("crit") <= 1


async def test_session_bound_holds_and_excess_sessions_wait():
    """With room for 5 sessions, 20 distinct sessions are all answered, never more than 5 kept."""
    processor = SleepyProcessor(0.02)
    manager = await _manager(processor, max_concurrent_sessions=5, max_in_flight=100)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, manager.get_performance_stats()["sessions"]["active_sessions"])
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    responses = await asyncio.gather(*(
        manager.process_conversation_message(user_id=f"u{i}", channel_id="c", content="hi",
                                             bot_id="b")
        for i in range(20)
    ))
    watcher.cancel()
    await manager.stop()
    assert len(responses) == 20
    assert 1 <= peak <= 5


async def test_stop_returns_within_deadline_with_stuck_work():
    """stop() returns soon after its deadline (1 s here) even when processors never finish."""
    manager = await _manager(StuckProcessor(), max_in_flight=10)
    pending = [asyncio.ensure_future(manager.process_conversation_message(
        user_id=f"u{i}", channel_id="c", content="hi", bot_id="b")) for i in range(50)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await manager.stop(timeout_s=1.0)
    assert time.monotonic() - started < 2.0
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, BaseException) for r in results)


async def test_performance_stats_have_the_documented_shape():
    """Stats carry sessions, performance, queues per priority, channels, cache and pools."""
    manager = await _manager(SleepyProcessor(0.0))
    await manager.process_conversation_message(user_id="u", channel_id="c", content="hi",
                                               bot_id="b", priority="high")
    stats = manager.get_performance_stats()
    await manager.stop()
    assert set(stats["sessions"]) >= {"active_sessions", "max_sessions", "utilization"}
    assert set(stats["performance"]) >= {"messages_per_second", "avg_response_time_ms",
                                         "p95_response_time_ms", "total_processed"}
    assert set(stats["queues"]) == {"critical", "high", "normal", "low"}
    assert stats["queues"]["high"]["processed"] == 1
    assert stats["channels"]["active_channels"] == 1
    assert "cache" in stats and "pools" in stats
    assert stats["performance"]["total_processed"] == 1


@pytest.mark.parametrize("enabled", [True, False])
async def test_both_paths_answer_with_the_same_shape(enabled):
    """The basic path (ENABLE_CONCURRENT_CONVERSATION_MANAGER=false) answers like the manager."""
    manager = await _manager(SleepyProcessor(0.0), enable_concurrent_manager=enabled)
    response = await manager.process_conversation_message(user_id="u", channel_id="c",
                                                          content="hello?", bot_id="b")
    await manager.stop()
    assert response.analysis["sleepy"].status.value == "ok"
    assert response.priority is Priority.HIGH


async def test_critical_new_session_gets_the_next_free_slot():
    """With the only session slot busy, a critical event of a new conversation is served before
    new normal conversations that were waiting longer."""
    processor = SleepyProcessor(0.02)
    manager = await _manager(processor, max_concurrent_sessions=1, max_in_flight=10)
    first = asyncio.ensure_future(manager.process_conversation_message(
        user_id="holder", channel_id="c", content="hi", bot_id="b", event_id="holder"))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(manager.process_conversation_message(
        user_id=f"u{i}", channel_id="c", content="hi", bot_id="b", event_id=f"n{i}"))
        for i in range(5)]
    critical = asyncio.ensure_future(manager.process_conversation_message(
        user_id="x", channel_id="c", content="hi", bot_id="b", event_id="crit",
        priority=Priority.CRITICAL))
    await asyncio.sleep(0)
    assert manager.get_performance_stats()["sessions"]["waiting_for_slot"] == 6
    await asyncio.gather(first, *waiting, critical)
    await manager.stop()
    assert processor.started[:2] == ["holder", "crit"]
    assert processor.started[2:] == [f"n{i}" for i in range(5)]


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "basic"])
async def test_a_second_stop_returns_only_once_the_first_has_ended(concurrent):
    """Two callers stopping the engine at once: the second does not return while the first
    still drains (both find every queued event answered)."""
    manager = await create_concurrent_conversation_manager(
        processors=[SleepyProcessor(0.01)], max_in_flight=1,
        enable_concurrent_manager=concurrent)
    pending = [asyncio.ensure_future(manager.process_conversation_message(
        user_id=f"u{i}", channel_id="c", content="hi", bot_id="b")) for i in range(20)]
    await asyncio.sleep(0)
    first = asyncio.ensure_future(manager.stop(timeout_s=5.0))
    await asyncio.sleep(0)
    await manager.stop(timeout_s=5.0)
    assert first.done()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ResponseEvent"] * 20


async def test_stop_still_runs_queued_work_while_it_drains():
    """stop() refuses new events but finishes what was queued within its timeout."""
    processor = SleepyProcessor(0.01)
    manager = await _manager(processor, max_in_flight=1)
    pending = [asyncio.ensure_future(manager.process_conversation_message(
        user_id=f"u{i}", channel_id="c", content="hi", bot_id="b")) for i in range(20)]
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(manager.stop(timeout_s=5.0))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="stopped"):
        await manager.process_conversation_message(user_id="late", channel_id="c",
                                                   content="hi", bot_id="b")
    started = time.monotonic()
    await stopping
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ResponseEvent"] * 20
    # Drained, not cut short: every event answered, and the stop ended within its timeout.
    assert time.monotonic() - started < 5.0


async def test_an_idle_start_respects_the_in_flight_bound_and_the_ready_order():
    """With one event in flight at most: a1 starts at once (idle scheduler), a2 queues behind it
    in its session, b1 (another session, idle) must not start beside a1 and, ready since before
    a2, runs next; then a2. Events of an idle scheduler skip its queue, never its rules."""
    processor = SleepyProcessor(0.05)
    manager = await _manager(processor, max_in_flight=1, max_concurrent_sessions=10)
    sends = [("a", "a1"), ("a", "a2"), ("b", "b1")]
    most_at_once = 0

    def watch() -> None:
        nonlocal most_at_once
        most_at_once = max(most_at_once, sum(processor.active.values()))
        if len(processor.started) < len(sends) or sum(processor.active.values()):
            asyncio.get_running_loop().call_soon(watch)

    asyncio.get_running_loop().call_soon(watch)
    responses = await asyncio.gather(*(
        manager.process_conversation_message(user_id=user, channel_id="c", content=event_id,
                                             bot_id="b", event_id=event_id)
        for user, event_id in sends))
    await manager.stop()
    assert processor.started == ["a1", "b1", "a2"]
    assert most_at_once == 1
    assert all(not r.degraded for r in responses)
    assert responses[1].analysis["sleepy"].data["history"] == ["a1"]


async def test_an_event_whose_session_cannot_be_read_fails_alone(monkeypatch):
    """A failure before the pipeline (reading the session's snapshot) still reaches the sink:
    the event's caller hears the error, the session's lane is freed, and its next event is
    answered with the history it had."""
    from stream.engine.sessions import SessionState

    real_snapshot = SessionState.snapshot
    calls = 0

    def snapshot_failing_once(self: SessionState) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("unreadable session")
        return real_snapshot(self)

    monkeypatch.setattr(SessionState, "snapshot", snapshot_failing_once)
    processor = SleepyProcessor(0.0)
    manager = await _manager(processor, max_in_flight=4)
    async with asyncio.timeout(10):  # an event nothing hears of would hang here
        results = await asyncio.gather(*(
            manager.process_conversation_message(user_id="u", channel_id="c", content=event_id,
                                                 bot_id="b", event_id=event_id)
            for event_id in ("m1", "m2", "m3")), return_exceptions=True)
    assert manager.engine.buffered == 0
    await manager.stop()
    assert [type(r).__name__ for r in results] == ["ResponseEvent", "RuntimeError",
                                                    "ResponseEvent"]
    assert results[2].analysis["sleepy"].data["history"] == ["m1"]


async def test_an_event_that_cannot_be_started_fails_and_frees_its_session(monkeypatch):
    """When the event's task cannot even be created, nothing else would hear of the event: the
    engine fails it itself, once, goes idle (a drain returns at once), and the session's next
    event still runs."""
    import types

    import stream.engine.concurrent as concurrent

    processor = SleepyProcessor(0.0)
    manager = await _manager(processor, max_in_flight=4)
    refused: list[str] = []

    def create_task_refusing_once(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if not refused:
            refused.append("m1")
            raise RuntimeError("no task today")
        return asyncio.create_task(coro, **kwargs)

    # Only the engine's module sees the refusing create_task.
    engine_asyncio = types.SimpleNamespace(
        **{name: getattr(asyncio, name) for name in dir(asyncio) if not name.startswith("_")})
    engine_asyncio.create_task = create_task_refusing_once
    monkeypatch.setattr(concurrent, "asyncio", engine_asyncio)

    async def send(event_id: str) -> Any:
        async with asyncio.timeout(10):  # an event nothing hears of would hang here
            return (await asyncio.gather(manager.process_conversation_message(
                user_id="u", channel_id="c", content=event_id, bot_id="b", event_id=event_id),
                return_exceptions=True))[0]

    first = await send("m1")
    assert refused == ["m1"] and type(first).__name__ == "RuntimeError"
    assert manager.engine.buffered == 0 and await manager.engine.drain(1.0)
    second = await send("m2")
    await manager.stop()
    assert type(second).__name__ == "ResponseEvent" and processor.started == ["m2"]
    assert manager.engine.counters.answered == 1


class TaskRecorder:
    """Waits once per event and notes which task ran it; for the events named in ``hang`` it
    waits until cancelled, and for those in ``cancel_own_task`` it asks for its own task's
    cancellation and returns before that cancellation is delivered."""

    name = "recorder"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS

    def __init__(self, timeout_s: float = 5.0, hang: tuple[str, ...] = (),
                 cancel_own_task: tuple[str, ...] = ()) -> None:
        self.timeout_s = timeout_s
        self.hang = hang
        self.cancel_own_task = cancel_own_task
        self.tasks: list[tuple[str, int]] = []

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        event_id = context.event.event_id
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append((event_id, id(task)))
        await asyncio.sleep(0)
        if event_id in self.hang:
            await asyncio.Event().wait()
        if event_id in self.cancel_own_task:
            task.cancel()
        return {}


async def _one_session(manager: Any, count: int) -> list[Any]:
    return list(await asyncio.gather(*(
        manager.process_conversation_message(user_id="u", channel_id="c", content=f"m{i}",
                                             bot_id="b", event_id=f"m{i}")
        for i in range(count)), return_exceptions=True))


async def test_a_task_serves_its_sessions_next_events_in_turn_up_to_its_share():
    """Once an event is answered, its task runs the next event the scheduler lets go (here
    the session's next) instead of a new task doing it, in order, up to ``_ITEMS_PER_TASK``
    events; then a new task goes on."""
    from stream.engine.concurrent import _ITEMS_PER_TASK

    recorder = TaskRecorder()
    manager = await _manager(recorder, max_in_flight=8)
    count = _ITEMS_PER_TASK + 8
    responses = await _one_session(manager, count)
    await manager.stop()
    assert all(type(r).__name__ == "ResponseEvent" and not r.degraded for r in responses)
    assert [event_id for event_id, _ in recorder.tasks] == [f"m{i}" for i in range(count)]
    tasks = [task for _, task in recorder.tasks]
    assert len(set(tasks[:_ITEMS_PER_TASK])) == 1 and len(set(tasks[_ITEMS_PER_TASK:])) == 1
    assert tasks[0] != tasks[-1]


async def test_a_timed_out_step_leaves_the_next_event_of_its_task_alone():
    """The deadline's cancellation ends with the step it timed out: the next event, run by the
    same task, is answered in full."""
    recorder = TaskRecorder(timeout_s=0.5, hang=("m0",))
    manager = await _manager(recorder, max_in_flight=8)
    first, second = await _one_session(manager, 2)
    await manager.stop()
    assert first.degraded == ["recorder"] and second.degraded == []
    assert recorder.tasks[0][1] == recorder.tasks[1][1]


async def test_a_task_being_cancelled_takes_no_further_event():
    """A cancellation still pending when an event ends was meant for it: that task takes no
    other event, and the session's next one runs in a new task, answered in full."""
    recorder = TaskRecorder(cancel_own_task=("m0",))
    manager = await _manager(recorder, max_in_flight=8)
    first, second = await _one_session(manager, 2)
    await manager.stop()
    assert type(first).__name__ == "ResponseEvent"
    assert type(second).__name__ == "ResponseEvent" and second.degraded == []
    assert recorder.tasks[0][1] != recorder.tasks[1][1]


class CancelsOwnTaskAfter:
    """Yields ``turns`` times, then asks for its own task's cancellation as the event ends."""

    name = "cancels"
    kind = ExecutionKind.ASYNC
    stage = Stage.ANALYSIS
    timeout_s = 5.0

    def __init__(self, turns: int) -> None:
        self.turns = turns

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        for _ in range(self.turns):
            await asyncio.sleep(0)
        if context.event.event_id == "e0":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return {}


@pytest.mark.parametrize("turns", range(6))
async def test_stop_tells_the_sink_of_an_event_whose_task_never_started(turns):
    """A stop may cancel a task created for an event before the task's first step (here: the
    next session's event, started as e0 ends with its own task's cancellation pending): the
    task's body never runs, yet the event must still end, failed, with its lane freed."""
    from schemas.events import ChatEvent
    from stream.app.wiring import build_engine
    from stream.settings import load_settings

    engine = build_engine(load_settings(max_in_flight=1), processors=[CancelsOwnTaskAfter(turns)])
    await engine.start()
    loop = asyncio.get_running_loop()
    waiters = []
    for i, user in enumerate(("a", "b")):
        waiter = loop.create_future()
        engine.submit(ChatEvent(event_id=f"e{i}", bot_id="x", channel_id="c", user_id=user,
                                content="hi"), waiter=waiter)
        waiters.append(waiter)
    await engine.stop(0.0)
    await asyncio.wait(waiters, timeout=2.0)
    assert all(waiter.done() for waiter in waiters) and engine.buffered == 0


class CancelsItself:
    """A step that lets a cancellation of its own escape (as when it awaits a future that a
    library cancelled); nothing cancels the event."""

    name = "cancels-itself"
    stage = Stage.ANALYSIS
    timeout_s = 5.0

    def __init__(self, kind: ExecutionKind) -> None:
        self.kind = kind
        self.calls = 0

    def _raise(self, context: ProcessorContext) -> dict[str, Any]:
        self.calls += 1
        if context.event.content == "cancel":
            raise asyncio.CancelledError
        return {"ok": True}

    def process(self, context: ProcessorContext) -> Any:
        if self.kind is ExecutionKind.INLINE:
            return self._raise(context)

        async def waits_then_raises() -> dict[str, Any]:
            await asyncio.sleep(0.001)
            return self._raise(context)
        return waits_then_raises()


@pytest.mark.parametrize("kind", [ExecutionKind.INLINE, ExecutionKind.ASYNC])
async def test_a_steps_own_cancellation_fails_the_event_and_the_session_goes_on(kind):
    """A ``CancelledError`` no stop caused fails its event (``StrayCancellation``, which the
    Kafka sink dead-letters) instead of being taken for a stop: the caller is not cancelled
    and the session's next event is answered."""
    step = CancelsItself(kind)
    manager = await _manager(step)
    try:
        with pytest.raises(StrayCancellation):
            await manager.process_conversation_message(user_id="u", channel_id="c",
                                                       content="cancel", bot_id="b")
        response = await manager.process_conversation_message(user_id="u", channel_id="c",
                                                              content="hello", bot_id="b")
        assert response.analysis["cancels-itself"].data == {"ok": True}
        assert step.calls == 2
    finally:
        await manager.stop()


class HeldStep:
    """Keeps its event in flight until the test lets it go."""

    name, kind, stage, timeout_s = "held", ExecutionKind.ASYNC, Stage.ANALYSIS, 30.0

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def process(self, context: ProcessorContext) -> dict[str, Any]:
        self.entered.set()
        await self.release.wait()
        return {}


async def test_a_session_busy_at_its_hand_over_leaves_with_its_partition():
    """A hand-over that ends with an event still in flight: the session goes with the
    partition at once, so what the late event records cannot outlive it, and the copy the
    next owner left in the changelog is the one installed when the partition comes back."""
    step = HeldStep()
    manager = await _manager(step, session_scope="channel")
    engine = manager.engine
    partition = TopicPartition("in", 0)
    event = ChatEvent.model_validate(event_for("b", "c", "u", "late"))
    waiter = asyncio.get_running_loop().create_future()
    try:
        engine.submit(event, source=RecordSource(tp=partition, offset=0, key=b"c"),
                      waiter=waiter)
        async with asyncio.timeout(10):
            await step.entered.wait()
        key = ("b", "c")
        assert engine.sessions.get(key) is not None and engine.in_flight == 1

        assert engine.release_partitions({partition}) == []  # nothing queued to drop
        assert engine.sessions.get(key) is None

        newer = SessionState.new(key, time.monotonic(), 50)
        newer.record(ChatEvent.model_validate(event_for("b", "c", "u", "answered elsewhere")),
                     thread_id=None, new_thread=False, emotion=None, now=time.monotonic())
        assert engine.restore_sessions([newer], partition) == 1
        step.release.set()
        async with asyncio.timeout(10):
            await waiter
            await engine.drain(10)
    finally:
        await manager.stop()
    assert engine.sessions.get(key) is newer
    assert [m.content for m in newer.recent_messages] == ["answered elsewhere"]


async def test_an_event_let_go_but_not_begun_at_its_hand_over_is_left_to_the_next_owner():
    """An event whose task was created but had not begun when its partition was handed over
    finds its session gone with the partition: it fails as not this member's to answer."""
    from stream.engine.work import EngineStopped

    manager = await _manager(HeldStep(), session_scope="channel")
    engine = manager.engine
    partition = TopicPartition("in", 0)
    waiter = asyncio.get_running_loop().create_future()
    try:
        engine.submit(ChatEvent.model_validate(event_for("b", "c", "u", "hi")),
                      source=RecordSource(tp=partition, offset=0, key=b"c"), waiter=waiter)
        assert engine.in_flight == 1  # its task exists and has not run yet
        engine.release_partitions({partition})
        async with asyncio.timeout(10):
            with pytest.raises(EngineStopped, match="partition revoked"):
                await waiter
        assert engine.buffered == 0
    finally:
        await manager.stop()


async def test_sessions_waiting_for_a_slot_do_not_make_every_event_walk_the_registry():
    """While sessions wait for a slot, an event's end that leaves its session busy frees no
    slot: asking the registry for one would walk every session, on every event's end."""
    processor = SleepyProcessor(0.0)
    manager = await _manager(processor, max_concurrent_sessions=20, max_in_flight=20)
    engine = manager.engine
    asked = 0
    is_busy = engine._is_busy

    def counting(key: Any) -> bool:
        nonlocal asked
        asked += 1
        return is_busy(key)

    engine._is_busy = counting
    events = [manager.process_conversation_message(user_id=f"u{i}", channel_id="c",
                                                   content=f"m{n}", bot_id="b")
              for n in range(10) for i in range(40)]  # 40 sessions over 20 slots, 10 events each
    try:
        responses = await asyncio.gather(*events)
    finally:
        await manager.stop()
    assert len(responses) == 400
    # One look per session each time a slot is sought: a walk per event's end would be
    # 20 sessions for each of the events answered while others wait.
    assert asked <= 2 * len(responses), asked


async def test_the_python_api_applies_the_configured_input_limits():
    """The limits set for the inbound topic hold for the Python API too, both ways."""
    import pydantic

    roomy = await _manager(SleepyProcessor(0.0), max_content_chars=10_000)
    strict = await _manager(SleepyProcessor(0.0), max_content_chars=10)
    try:
        answered = await roomy.process_conversation_message(user_id="u", channel_id="c",
                                                            content="x" * 5_000)
        assert answered.analysis["sleepy"].status == "ok"
        with pytest.raises(pydantic.ValidationError, match="the limit is 10"):
            await strict.process_conversation_message(user_id="u", channel_id="c",
                                                      content="x" * 3_000)
    finally:
        await roomy.stop()
        await strict.stop()


class ClosingResponder:
    """A responder holding a resource (an HTTP client) that it closes in ``aclose``."""

    name = "closing"

    def __init__(self) -> None:
        self.closed = 0

    async def respond(self, context: ProcessorContext) -> str:
        return "hello"

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("concurrent", [True, False])
async def test_stopping_the_engine_closes_what_the_reply_step_holds(concurrent):
    """The reply step's responder (the OpenAI one holds an HTTP client) is closed once, at stop."""
    from processors.reply import ReplyProcessor

    responder = ClosingResponder()
    manager = await create_concurrent_conversation_manager(
        processors=[ReplyProcessor(responder)], enable_concurrent_manager=concurrent)
    response = await manager.process_conversation_message(user_id="u", channel_id="c",
                                                          content="hi")
    assert response.reply == "hello" and responder.closed == 0
    await manager.stop()
    assert responder.closed == 1
