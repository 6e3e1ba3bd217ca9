"""Restoring from the changelog: a partition read to its end installs its sessions; one the
deadline cut short installs none (what was read of it may be older than what was not)."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable
from typing import Any

import orjson
from aiokafka.structs import TopicPartition

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
