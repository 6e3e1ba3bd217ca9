"""Conversation state survives members: the session changelog, on the real broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from kafka_helpers import publish_events, running_chatstream

from infra.topics import TopicSpec, create_missing_topics
from stream.app.wiring import build_engine
from stream.botkit.client import TopicWatcher
from stream.engine.sessions import SessionState
from stream.kafka.changelog import Changelog
from stream.kafka.config import ClientStartFailed, common_client_config
from stream.kafka.member import StreamRunner
from stream.kafka.publisher import Publisher
from stream.kafka.topics import ChangelogMismatch, TopicMissing, ensure_topics
from stream.observability.counters import EventCounters
from stream.settings import Settings, SettingsError

pytestmark = pytest.mark.kafka


def turn(i: int, content: str, user: str = "u1") -> dict[str, Any]:
    return {"event_id": f"turn-{user}-{i}", "bot_id": "b", "channel_id": "support",
            "user_id": user, "content": content}


async def answer(settings: Settings, runner: StreamRunner, events: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    async with TopicWatcher(settings, from_end=True) as watcher:
        await publish_events(settings, events)
        return [await watcher.wait_for(e["event_id"], timeout_s=30) for e in events]


async def test_a_conversation_continues_on_the_next_member(settings_for):
    """Member A answers three turns and stops; member B, restoring the changelog, answers the
    fourth with the three earlier turns in memory and the thread count carried on."""
    settings = settings_for(partitions=2)
    first = [turn(0, "my parcel with the blue lamp has not arrived"),
             turn(1, "it was sent on tuesday by express"),
             turn(2, "the tracking page shows nothing")]
    async with running_chatstream(settings) as runner:
        before = await answer(settings, runner, first)
    async with running_chatstream(settings) as runner:
        (after,) = await answer(settings, runner, [turn(3, "any news on the blue lamp parcel?")])
        restored = runner.counters.sessions_restored
    assert restored >= 1
    memory = after["analysis"]["memory"]["data"]
    assert memory["history_size"] == 3
    assert memory["related"] and memory["related"][0]["event_id"] == "turn-u1-0"
    thread = after["analysis"]["thread"]["data"]
    number = int(thread["thread_id"].rsplit("#", 1)[1])
    earlier = int(before[-1]["analysis"]["thread"]["data"]["thread_id"].rsplit("#", 1)[1])
    assert thread["reason"] != "first" and number >= earlier  # not a conversation starting over


async def test_an_expired_session_leaves_a_tombstone_and_is_not_restored(settings_for):
    """An idle session that expires is tombstoned: the next member starts it empty."""
    settings = settings_for(partitions=1, session_timeout_minutes=1 / 60)
    async with running_chatstream(settings) as runner:
        await answer(settings, runner, [turn(0, "hello there", user="idle")])
        async with asyncio.timeout(20):
            while len(runner.engine.sessions) if runner.engine else 0:  # type: ignore[attr-defined]
                await asyncio.sleep(0.1)
        # The tombstones are written in the background: the marker's and the slot's.
        await changelog_records(settings, at_least=4)
    async with running_chatstream(settings) as runner:
        (after,) = await answer(settings, runner, [turn(1, "hello again", user="idle")])
    assert after["analysis"]["memory"]["data"]["history_size"] == 0
    records = await changelog_records(settings, at_least=6)
    # The first turn's incarnation marker and slot (its message with the header), their
    # tombstones on expiry, then the new conversation's marker and first slot.
    keys = [key for key, _ in records]
    assert len(records) == 6 and keys[0] == keys[3] == keys[4] != keys[1] == keys[2] == keys[5]
    assert [value is None for _, value in records] == [False, False, True, True, False, False]
    assert records[0][1] != records[4][1]  # another incarnation


async def test_a_session_restored_into_a_smaller_window_tombstones_every_slot_it_held(
        settings_for):
    """Slots past a window shrunk since the last member are never written again: when the
    session ends, its tombstones cover them too, so compaction leaves nothing of it behind."""
    wide = settings_for(partitions=1, session_history_size=6)
    async with running_chatstream(wide) as runner:
        await answer(wide, runner, [turn(i, f"message {i}", user="shrunk") for i in range(6)])
    narrow = wide.model_copy(update={"session_history_size": 3,
                                     "session_timeout_minutes": 1 / 60})
    async with running_chatstream(narrow) as runner:
        async with asyncio.timeout(20):  # restored, then expired (idle past its timeout)
            while runner.counters.sessions_restored == 0 or (
                    len(runner.engine.sessions) if runner.engine else 0):  # type: ignore[attr-defined]
                await asyncio.sleep(0.1)
        # Six slots and the marker, then a tombstone for each of them.
        records = await changelog_records(narrow, at_least=14)
    latest = {key: value for key, value in records}
    assert len(latest) == 7 and all(value is None for value in latest.values()), latest


async def changelog_records(settings: Settings, at_least: int, timeout_s: float = 30
                            ) -> list[tuple[bytes | None, bytes | None]]:
    """The changelog's records from the start: read until there are ``at_least`` and a fetch
    brings nothing more (so that a record too many is seen too), or until the deadline."""
    consumer = AIOKafkaConsumer(settings.changelog_topic,
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes | None, bytes | None]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            found += [(r.key, r.value) for records in batches.values() for r in records]
            if len(found) >= at_least and not batches:
                break
        return found
    finally:
        await consumer.stop()


async def test_restoring_a_thousand_sessions_is_bounded_and_measured(settings_for):
    """1,000 sessions written to the changelog are all restored, in well under the rebalance
    timeout; the figure is printed for the record."""
    settings = settings_for(partitions=4)
    await ensure_topics(settings)
    from aiokafka import AIOKafkaProducer

    from schemas.events import ChatEvent
    from stream.engine.session_documents import answer_record, marker_record, session_records

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    await producer.start()
    try:
        import orjson

        acks = []
        for i in range(1000):  # what each session's first answer writes: marker, then slot
            state = SessionState.new(("b", f"c{i}", "u"), 0.0, 20)
            state.record(ChatEvent(event_id=f"e{i}", bot_id="b", channel_id=f"c{i}",
                                   user_id="u", content="hello"),
                         thread_id="t1", new_thread=True, emotion=None, now=0.0)
            records = session_records(state)
            for key, document in ((state.session_id.encode(), marker_record(records)),
                                  (f"{state.session_id}\x1f{records.slot}".encode(),
                                   answer_record(records))):
                acks.append(await producer.send(settings.changelog_topic, orjson.dumps(document),
                                                key=key, partition=i % 4))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    counters = EventCounters()
    changelog = Changelog(settings, Publisher(None), counters, owned=lambda: set())  # type: ignore[arg-type]
    started = time.monotonic()
    found = await changelog.restore(range(4), timeout_s=settings.rebalance_timeout_seconds)
    seconds = time.monotonic() - started
    print(f"\nrestored {sum(len(r.documents) for r in found.values())} sessions in {seconds:.3f} s")
    assert all(r.complete for r in found.values())
    assert sum(len(r.documents) for r in found.values()) == 1000
    # The latest written first: when the free session slots cannot hold them all, they get them.
    assert [header["key"][1] for header, _ in found[0].documents] == \
        [f"c{i}" for i in reversed(range(0, 1000, 4))]
    assert seconds < settings.rebalance_timeout_seconds


async def test_a_changelog_with_fewer_partitions_is_refused_at_start(settings_for):
    """Partition N of the changelog holds inbound partition N's sessions: too few partitions is
    a clear start-up error, not a member that stalls on its first answer."""
    settings = settings_for(partitions=4)
    # Made by hand: ``ensure_topics`` itself refuses to leave topics in this state.
    await create_missing_topics(common_client_config(settings, "test"), [
        TopicSpec(settings.changelog_topic, 1), TopicSpec(settings.inbound_topic, 4),
        TopicSpec(settings.response_topic, 4), TopicSpec(settings.dlq_topic, 4)])
    before = asyncio.all_tasks()
    runner = StreamRunner(settings, lambda sink: build_engine(settings, sink))
    with pytest.raises(ChangelogMismatch, match="has 1 partitions, the inbound topic 4"):
        await runner.run(asyncio.Event())
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert not left, f"the refused member left its clients running: {left}"


async def test_a_missing_changelog_is_a_start_failure_a_restart_may_mend(settings_for):
    """Not a bad setting (exit 2, no restart) but a topic not made yet: once `topics ensure`
    has run, the next start succeeds."""
    settings = settings_for(partitions=4)
    await create_missing_topics(common_client_config(settings, "test"), [
        TopicSpec(name, 4) for name in (settings.inbound_topic, settings.response_topic,
                                        settings.dlq_topic)])
    runner = StreamRunner(settings, lambda sink: build_engine(settings, sink))
    with pytest.raises(TopicMissing, match=r"changelog topic .* does not exist: create it with"):
        await runner.run(asyncio.Event())
    assert isinstance(TopicMissing("x"), ClientStartFailed)
    assert not isinstance(TopicMissing("x"), SettingsError)


async def test_events_waiting_at_assignment_see_their_restored_session(settings_for):
    """A turn already waiting in the topic when the next member joins is answered with the
    restored history: no event of a partition is taken before its sessions are back."""
    settings = settings_for(partitions=2)
    first = [turn(0, "my parcel with the blue lamp has not arrived", user="waiting"),
             turn(1, "it was sent on tuesday by express", user="waiting")]
    async with running_chatstream(settings) as runner:
        await answer(settings, runner, first)
    async with TopicWatcher(settings, from_end=True) as watcher:
        await publish_events(settings, [turn(2, "any news on the blue lamp?", user="waiting")])
        async with running_chatstream(settings):
            after = await watcher.wait_for("turn-waiting-2", timeout_s=30)
    assert after["analysis"]["memory"]["data"]["history_size"] == 2


async def test_a_changelog_written_by_version_2_members_and_then_this_one_restores(settings_for):
    """A rolling upgrade: a version 2 member wrote a session's message slot and its header
    record; this version, having restored the session from them, wrote the marker of a new
    incarnation and the next answer's slot record with the header. The restore takes that
    header and both messages."""
    import orjson
    from aiokafka import AIOKafkaProducer

    from schemas.events import ChatEvent
    from stream.engine.session_documents import (
        answer_record,
        from_records,
        marker_record,
        session_records,
    )

    settings = settings_for(partitions=1)
    await ensure_topics(settings)
    state = SessionState.new(("b", "support", "u1"), 0.0, 20)
    writes: list[tuple[bytes, Any]] = []
    for n, content in enumerate(["my parcel is late", "it is still not here"], start=1):
        state.record(ChatEvent(event_id=f"e{n}", bot_id="b", channel_id="support",
                               user_id="u1", content=content),
                     thread_id="t1", new_thread=n == 1, emotion=None, now=float(n))
        records = session_records(state)
        slot = f"{state.session_id}\x1f{records.slot}".encode()
        if n == 1:
            assert records.message is not None
            state.changelog_incarnation = None  # version 2 knew none
            header = {k: v for k, v in records.header.items() if k != "incarnation"}
            writes += [(slot, {**records.message, "version": 2}),
                       (state.session_id.encode(), {**header, "version": 2})]
        else:
            assert records.opens
            writes += [(state.session_id.encode(), marker_record(records)),
                       (slot, answer_record(records))]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, document in writes:
            await (await producer.send(settings.changelog_topic, orjson.dumps(document), key=key,
                                       partition=0))
    finally:
        await producer.stop()
    changelog = Changelog(settings, Publisher(None), EventCounters(), owned=lambda: set())  # type: ignore[arg-type]
    found = await changelog.restore([0], timeout_s=settings.rebalance_timeout_seconds)
    ((header, messages),) = found[0].documents
    restored = from_records(header, messages, now=9.0, history_size=20)
    assert restored.snapshot() == state.snapshot()
    assert [m.content for m in restored.recent_messages] == ["my parcel is late",
                                                             "it is still not here"]
