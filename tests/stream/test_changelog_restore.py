"""Restoring from the changelog: a partition read to its end installs its sessions; one the
deadline cut short installs none (what was read of it may be older than what was not); a
restore cancelled while its consumer stops ends cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Hashable, Iterable
from typing import Any

import orjson
import pytest
from aiokafka.structs import TopicPartition

import stream.kafka.changelog as changelog_module
from schemas.events import ChatEvent
from stream.engine.session_documents import answer_record, marker_record, restorable, session_records
from stream.engine.sessions import SessionState
from stream.kafka.changelog import Changelog, Restored
from stream.observability.counters import EventCounters
from stream.settings import load_settings


def _document(channel: str) -> tuple[Any, list[Any]]:
    """A session's header and messages as a restore finds them after one answer."""
    state = SessionState.new(("b", channel, "u"), 0.0, 20)
    state.record(ChatEvent(event_id=f"e-{channel}", bot_id="b", channel_id=channel, user_id="u",
                           content="hello"), thread_id="t1", new_thread=True, emotion=None, now=0.0)
    records = session_records(state)
    found = restorable((0, orjson.loads(orjson.dumps(marker_record(records)))),
                       [(1, orjson.loads(orjson.dumps(answer_record(records))))])
    assert found is not None
    _, header, messages = found
    return header, messages


class _ReadSoFar(Changelog):
    """A changelog whose read returns what is given, as a read cut short or not would."""

    def __init__(self, found: dict[int, Restored], counters: EventCounters) -> None:
        super().__init__(load_settings(), batches=None, counters=counters,  # type: ignore[arg-type]
                         owned=lambda: set())
        self.found = found

    async def restore(self, partitions: Collection[int], timeout_s: float
                      ) -> dict[int, Restored]:
        return {p: self.found[p] for p in partitions}


class _Engine:
    def __init__(self) -> None:
        self.installed: dict[Hashable, list[str]] = {}

    def restore_sessions(self, states: Iterable[SessionState], partition: Hashable) -> int:
        ids = [state.session_id for state in states]
        self.installed[partition] = ids
        return len(ids)


async def test_a_partition_read_to_its_end_installs_its_sessions_one_cut_short_none():
    counters = EventCounters()
    changelog = _ReadSoFar({
        0: Restored([_document("c0"), _document("c1")], records_read=4, complete=True),
        1: Restored([_document("c2")], records_read=2, complete=False),
    }, counters)
    engine = _Engine()
    read_whole, cut_short = TopicPartition("in", 0), TopicPartition("in", 1)
    installed = await changelog.restore_into(engine, [read_whole, cut_short])
    assert installed == 2
    assert len(engine.installed[read_whole]) == 2
    assert cut_short not in engine.installed
    assert counters.sessions_restored == 2


class _SwallowingConsumer:
    """Stops as aiokafka's consumer does: a cancellation that comes while it waits for its
    fetcher to end is swallowed."""

    stopping: asyncio.Event  # set by the test

    def __init__(self, *_: Any, **__: Any) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        _SwallowingConsumer.stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)


async def _read_nothing(*_: Any) -> None:
    return None


async def test_a_restore_cancelled_while_its_consumer_stops_is_cancelled(monkeypatch):
    monkeypatch.setattr(changelog_module, "AIOKafkaConsumer", _SwallowingConsumer)
    monkeypatch.setattr(changelog_module, "_read_to_end", _read_nothing)
    changelog = Changelog(load_settings(), batches=None, counters=EventCounters(),  # type: ignore[arg-type]
                          owned=lambda: set())
    _SwallowingConsumer.stopping = asyncio.Event()
    restoring = asyncio.create_task(changelog.restore({0}, timeout_s=1.0))
    await asyncio.wait_for(_SwallowingConsumer.stopping.wait(), 5)
    restoring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(restoring, 10)
