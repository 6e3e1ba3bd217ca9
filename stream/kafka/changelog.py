"""The session changelog: each session's latest state in a topic co-partitioned with the inbound
topic, so a partition's conversations move with it to whichever member owns it next.

Rules, in the order they apply:
1. Written with the response: ``KafkaSink.answered`` queues the session's record (its newest
   message with the session's header, keyed by session id and window slot: see
   ``stream.engine.session_documents``; to the inbound record's partition number) together
   with the response, and the record's offset completes only once both are acknowledged. A
   record still queued when the same key's next one comes is replaced by it; the earlier
   event's offset then waits for the later record. A crash between the acks leaves the offset
   uncommitted: the next owner answers the event again (the same response id), from the state
   before it unless that state's record was already acknowledged (then the event shows twice
   in the restored history). A session's first answer (or its first after a restore from a
   version 2 changelog) also writes, first, the marker of the session's incarnation under the
   session id. Restoring reads version 2 changelogs too (a header record per session beside
   its message slots).
2. A session that ends for good (expired or evicted) gets tombstones (the slots its window
   filled, those its key held when it was restored, which a window shrunk since never
   writes again, and its own key: its marker or version 2 header), queued behind its last records;
   one handed over, or ending while its partition is being handed over, does not (its state
   is the next owner's). Without the record under its own key a session is not restored,
   whatever slots are left.
3. On assignment, before any event of a partition is fetched (aiokafka awaits the assignment
   callback first), ``restore`` reads that changelog partition from the start until its
   position reaches the high watermark of the latest fetch, and keeps the last record per key
   (tombstones delete): on Apache Kafka compaction keeps the topic small, on the embedded
   broker (no compaction) the read is longer but the result the same. Bounded by ``timeout_s``; the
   sessions of a partition not read to its end by then all start empty (logged): what was
   read of it may be older than what was not. Sessions are installed into free session slots,
   the most recently written first; a restore evicts nothing (eviction tombstones), so those
   that find no slot start empty (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from stream.engine.session_documents import (
    SessionRecords,
    answer_record,
    from_records,
    marker_record,
    restorable,
    slot_of,
)
from stream.engine.sessions import SessionState
from stream.engine.work import WorkItem
from stream.kafka.config import common_client_config
from stream.kafka.records import Delivery
from stream.observability.counters import EventCounters
from stream.settings import Settings

__all__ = ["Changelog", "Restored"]

log = logging.getLogger(__name__)


class Queues(Protocol):
    """``OrderedBatches``: a record of a key queued after (or in place of) the key's last."""

    def add(self, delivery: Delivery, on_done: Callable[[BaseException | None], None],
            coalesce: bool = False) -> None: ...


class RestoresSessions(Protocol):
    def restore_sessions(self, states: Iterable[SessionState], partition: Hashable) -> int: ...


@dataclass
class Restored:
    """What ``restore`` found for one inbound partition."""

    documents: list[tuple[Any, list[Any]]]  # per session: its header and its slots' messages
    records_read: int
    complete: bool
    # Per session id: the slot numbers its key holds in the changelog (any life's).
    slots: dict[str, frozenset[int]] = field(default_factory=dict)


class Changelog:
    def __init__(self, settings: Settings, batches: Queues, counters: EventCounters,
                 owned: Callable[[], Collection[TopicPartition]]) -> None:
        self._settings = settings
        self._topic = settings.changelog_topic
        self._batches = batches
        self._counters = counters
        self._owned = owned  # a session of a partition handed over is not ours to tombstone

    def deliveries(self, item: WorkItem) -> list[Delivery]:
        """The changelog records of an answered item (none without state or partition): its
        newest message with the session's header, keyed by session id and slot, after the
        marker of the session's incarnation, keyed by session id, when the answer opens it."""
        partition = getattr(item.source, "tp", None)
        records: SessionRecords | None = item.session_state
        if records is None or partition is None:
            return []
        if records.message is None:  # nothing answered yet: nothing to write
            return []
        slot = Delivery(topic=self._topic, key=_slot_key(item.session_id, records.slot),
                        value=orjson.dumps(answer_record(records)),
                        partition=partition.partition)
        if not records.opens:
            return [slot]
        marker = Delivery(topic=self._topic, key=item.session_id.encode(),
                          value=orjson.dumps(marker_record(records)),
                          partition=partition.partition)
        return [marker, slot]

    def dropped(self, state: SessionState) -> None:
        """Queue the tombstones of a session that ended for good (the slots its window filled,
        and its own key), after (or instead of, if still queued) its last records."""
        if not isinstance(state.partition, TopicPartition) or state.partition not in self._owned():
            return
        session = state.session_id
        size = self._settings.session_history_size
        count = state.message_count
        filled = {slot_of(n, size) for n in range(max(1, count - size + 1), count + 1)}
        keys = [_slot_key(session, slot) for slot in sorted(filled | state.changelog_slots)]
        keys.append(session.encode())

        def written(error: BaseException | None) -> None:
            if error is not None:  # a lost tombstone only keeps a stale session restorable
                log.warning("tombstone of session %s not written: %r", session, error)

        for key in keys:
            self._batches.add(Delivery(topic=self._topic, key=key, value=None,
                                       partition=state.partition.partition), written,
                              coalesce=True)

    async def restore_into(self, engine: RestoresSessions,
                           assigned: Collection[TopicPartition]) -> int:
        """Restore the sessions of ``assigned`` into ``engine``; how many were installed. Logs
        and counts what it did (``sessions_restored``, ``restore_seconds``)."""
        started = time.monotonic()
        timeout_s = self._settings.rebalance_timeout_seconds
        found = await self.restore({tp.partition for tp in assigned}, timeout_s)
        installed = read = 0
        for tp in assigned:
            restored = found[tp.partition]
            read += restored.records_read
            if not restored.complete:
                # What was read may be older than what follows it (a later state, a tombstone
                # of a session that ended): installed, it would stay, as a live session is kept.
                log.warning("changelog of %s[%d] not read to its end within %.1f s: its "
                            "sessions start empty", tp.topic, tp.partition, timeout_s)
                continue
            states = self._states(restored.documents, restored.slots)
            installed_here = engine.restore_sessions(states, tp)
            if installed_here < len(states):
                log.warning("%d sessions of %s[%d] not restored: live here already, or no free "
                            "session slot (CHATSTREAM_MAX_CONCURRENT_SESSIONS); they start empty",
                            len(states) - installed_here, tp.topic, tp.partition)
            installed += installed_here
        elapsed = time.monotonic() - started
        self._counters.sessions_restored += installed
        self._counters.restore_seconds += elapsed
        log.info("restored %d sessions of %d partitions from %d changelog records in %.3f s",
                 installed, len(assigned), read, elapsed)
        return installed

    def _states(self, documents: list[tuple[Any, list[Any]]],
                slots: dict[str, frozenset[int]]) -> list[SessionState]:
        now, states = time.monotonic(), []
        for header, messages in documents:
            try:
                state = from_records(header, messages, now, self._settings.session_history_size)
            except ValueError as exc:
                log.warning("changelog record skipped, that session starts empty: %s", exc)
                continue
            state.changelog_slots = slots.get(state.session_id, frozenset())
            states.append(state)
        return states

    async def restore(self, partitions: Collection[int], timeout_s: float
                      ) -> dict[int, Restored]:
        """The latest documents of the sessions of each inbound partition number (rule 3)."""
        found = {p: Restored([], 0, False) for p in partitions}
        if not found:
            return found
        consumer = AIOKafkaConsumer(
            **common_client_config(self._settings, "chatstream-restore"), group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms)
        await consumer.start()
        try:
            await _read_to_end(consumer, self._topic, found, timeout_s)
        finally:
            await consumer.stop()
        # aiokafka's stop swallows a cancellation that comes while it waits for its fetcher: a
        # restore cancelled then (by a hand-over, by a stop) must not install what it read.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        return found


async def _read_to_end(consumer: AIOKafkaConsumer, topic: str, found: dict[int, Restored],
                       timeout_s: float) -> None:
    tps = [TopicPartition(topic, p) for p in found]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    latest: dict[int, dict[bytes, tuple[int, bytes | None]]] = {p: {} for p in found}
    deadline = time.monotonic() + timeout_s
    remaining = set(tps)
    while remaining and time.monotonic() < deadline:
        batches = await consumer.getmany(*remaining, timeout_ms=100, max_records=10_000)
        for tp, records in batches.items():
            found[tp.partition].records_read += len(records)
            for record in records:
                if record.key is not None:
                    latest[tp.partition][record.key] = (record.offset, record.value)
        for tp in list(remaining):
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) >= highwater:
                remaining.discard(tp)
                found[tp.partition].complete = True
    for partition, values in latest.items():
        headers: dict[bytes, tuple[int, bytes]] = {}
        slots: dict[bytes, list[tuple[int, bytes]]] = {}
        numbers: dict[bytes, set[int]] = {}
        for key, (offset, value) in values.items():
            if value is None:
                continue
            session, slotted, slot = key.partition(_SLOT_SEPARATOR)
            if slotted:
                slots.setdefault(session, []).append((offset, value))
                if slot.isdigit():
                    numbers.setdefault(session, set()).add(int(slot))
            else:
                headers[key] = (offset, value)
        documents = []
        for session, (offset, value) in headers.items():  # slots alone: a life that ended
            try:
                own = (offset, orjson.loads(value))
                written = [(at, orjson.loads(slot)) for at, slot in slots.get(session, ())]
            except orjson.JSONDecodeError:
                log.warning("changelog record of %r is not JSON; that session starts empty",
                            session)
                continue
            document = restorable(own, written)
            if document is not None:
                documents.append(document)
        # Newest header first: when the free session slots cannot hold them all, the sessions
        # written most recently get them.
        documents.sort(key=lambda document: document[0], reverse=True)
        found[partition].documents.extend((header, messages) for _, header, messages in documents)
        found[partition].slots.update(
            (session.decode(errors="replace"), frozenset(held)) for session, held in numbers.items()
            if session in headers)


# Session ids never hold it: their parts are percent-quoted (``session_id_for``).
_SLOT_SEPARATOR = b"\x1f"


def _slot_key(session_id: str, slot: int) -> bytes:
    return b"%s%s%d" % (session_id.encode(), _SLOT_SEPARATOR, slot)
