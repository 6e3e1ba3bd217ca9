"""Publishing in ordered batches: one batch in flight per partition, one acknowledgement each.

Rules, in the order they apply:
1. ``add`` queues a delivery for its topic-partition, in call order, and never waits. With
   ``coalesce``, a delivery of the same key still queued (not yet sent, and the key's last) is
   superseded: only the latest value goes out, in the place of the latest add (so it never
   goes ahead of what was added before it), and both callers hear of that record.
2. Each partition has at most one batch in flight. What is queued meanwhile goes out together
   once it is acknowledged; an idle partition sends on the next loop iteration, with everything
   queued during the current one. No timer: the broker's round trip sets the batch size.
3. A batch is acknowledged as a whole, and each of its deliveries reported done in order
   (``on_done(None)``).
4. A batch the producer could not deliver, and a record too large for a batch, are published
   again one by one with ``Publisher.publish``'s rules (outages waited out, ``PublishRejected``
   for a record refused for good) before anything queued after them: order per partition holds
   through failures. Each caller hears its own record's result.
5. ``flush`` waits until nothing is queued or in flight; ``close`` cancels the rest, whose
   callers hear ``ProducerClosed`` (their offsets stay uncommitted).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.errors import ProducerClosed
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from stream.kafka.records import Delivery

__all__ = ["BatchProducer", "Done", "OrderedBatches", "partition_for_key"]

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]


class BatchProducer(Protocol):
    """``AIOKafkaProducer``'s batch interface."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...

    async def partitions_for(self, topic: str) -> Collection[int]: ...


class PublishesOne(Protocol):
    async def publish(self, delivery: Delivery) -> Any: ...


@functools.lru_cache(maxsize=65_536)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition the Java client and aiokafka's default partitioner choose for ``key``
    (murmur2), cached: conversation keys repeat."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(slots=True, eq=False)
class _Entry:
    delivery: Delivery
    callbacks: list[Done]
    size: int
    live: bool = True  # False once a later record of its key superseded it


@dataclass(eq=False)
class _Lane:
    """One partition: what waits to be sent, by coalescing key too, and its sender."""

    tp: TopicPartition
    queued: list[_Entry] = field(default_factory=list)
    by_key: dict[bytes, _Entry] = field(default_factory=dict)
    sending: bool = False


class OrderedBatches:
    def __init__(self, producer: BatchProducer, fallback: PublishesOne, *,
                 max_batch_bytes: int) -> None:
        self._producer = producer
        self._fallback = fallback
        # Record overhead (lengths, offsets, timestamps) beyond key, value and headers.
        self._max_record_bytes = max_batch_bytes - 128
        self._lanes: dict[TopicPartition, _Lane] = {}
        self._partitions: dict[str, int] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self._sending = 0  # lanes with a sender
        self._idle = asyncio.Event()
        self._idle.set()
        self.waiting = 0  # deliveries queued or in flight
        self.batches_sent = 0

    async def prepare(self, topics: Sequence[str]) -> None:
        """Learn the partition counts of the topics ``partition_of`` is asked about."""
        for topic in topics:
            partitions = await self._producer.partitions_for(topic)
            self._partitions[topic] = len(partitions)

    def partition_of(self, topic: str, key: bytes) -> int:
        """The partition of ``key`` in ``topic`` (a topic ``prepare`` has seen)."""
        return partition_for_key(key, self._partitions[topic])

    def add(self, delivery: Delivery, on_done: Done, coalesce: bool = False) -> None:
        assert delivery.partition is not None, "an ordered batch needs the partition"
        # Looked up by a plain tuple, equal to the TopicPartition key and cheaper to build.
        lane = self._lanes.get((delivery.topic, delivery.partition))  # type: ignore[call-overload]
        if lane is None:
            tp = TopicPartition(delivery.topic, delivery.partition)
            lane = self._lanes[tp] = _Lane(tp)
        self.waiting += 1
        key = delivery.key
        callbacks = [on_done]
        if coalesce and key is not None:
            earlier = lane.by_key.get(key)
            if earlier is not None:  # superseded: its callers wait for this record instead
                callbacks = earlier.callbacks + callbacks
                earlier.callbacks, earlier.live = [], False
        size = len(key or b"") + len(delivery.value or b"")
        if delivery.headers:
            size += _headers_size(delivery.headers)
        entry = _Entry(delivery, callbacks, size)
        lane.queued.append(entry)
        if key is not None:
            if coalesce:
                lane.by_key[key] = entry
            elif lane.by_key:  # a later value must not jump over this record of its key
                lane.by_key.pop(key, None)
        if not lane.sending:  # the idle event is set only once no lane is sending
            self._idle.clear()
            lane.sending = True
            self._sending += 1
            task = asyncio.get_running_loop().create_task(self._send_lane(lane))
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything added is acknowledged or failed; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Cancel what is still queued or in flight; its callers hear ``ProducerClosed``."""
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for lane in self._lanes.values():
            self._report(lane.queued, ProducerClosed())
            lane.queued, lane.by_key = [], {}
        self._lanes.clear()
        # A sender cancelled before its first step never ran its clean-up: nothing sends now.
        self._sending = 0
        self._idle.set()

    # -- one partition's sender ------------------------------------------------------------

    async def _send_lane(self, lane: _Lane) -> None:
        # The first await lets every delivery added in this loop iteration join the batch.
        await asyncio.sleep(0)
        tp = lane.tp
        try:
            while lane.queued:
                entries, lane.queued, lane.by_key = lane.queued, [], {}
                try:
                    await self._send(tp, entries)
                except asyncio.CancelledError:
                    self._report(entries, ProducerClosed())
                    raise
                except Exception as error:  # a bug: its callers must still hear, once each
                    log.exception("sending to %s[%d] failed", tp.topic, tp.partition)
                    self._report(entries, error)
        finally:
            lane.sending = False
            self._sending -= 1
            if not self._sending:
                self._idle.set()

    async def _send(self, tp: TopicPartition, entries: list[_Entry]) -> None:
        batch: Any = None
        in_batch: list[_Entry] = []
        for entry in entries:
            if not entry.live:
                continue
            if entry.size > self._max_record_bytes:
                await self._send_batch(tp, batch, in_batch)
                batch, in_batch = None, []
                await self._one_by_one(tp, [entry])
                continue
            if batch is None:
                batch = self._producer.create_batch()
            if batch.append(key=entry.delivery.key, value=entry.delivery.value, timestamp=None,
                            headers=entry.delivery.headers) is None:  # full: send, start anew
                await self._send_batch(tp, batch, in_batch)
                batch = self._producer.create_batch()
                batch.append(key=entry.delivery.key, value=entry.delivery.value,
                             timestamp=None, headers=entry.delivery.headers)
                in_batch = []
            in_batch.append(entry)
        await self._send_batch(tp, batch, in_batch)

    async def _send_batch(self, tp: TopicPartition, batch: Any, entries: list[_Entry]) -> None:
        if batch is None or not entries:
            return
        batch.close()  # closed: the accumulator sends it at once instead of lingering
        try:
            acknowledged = await self._producer.send_batch(batch, tp.topic, partition=tp.partition)
            await acknowledged
        except ProducerClosed as closed:
            self._report(entries, closed)
            return
        except Exception as error:  # delivery failed: record by record, with the retry rules
            log.warning("batch of %d records to %s[%d] failed (%r); publishing them one by one",
                        len(entries), tp.topic, tp.partition, error)
            await self._one_by_one(tp, entries)
            return
        self.batches_sent += 1
        self._report(entries, None)

    async def _one_by_one(self, tp: TopicPartition, entries: list[_Entry]) -> None:
        for index, entry in enumerate(entries):
            try:
                await self._fallback.publish(entry.delivery)
            except asyncio.CancelledError:
                self._report(entries[index:], ProducerClosed())
                raise
            except Exception as error:
                self._report([entry], error)
            else:
                self._report([entry], None)

    def _report(self, entries: list[_Entry], error: BaseException | None) -> None:
        for entry in entries:
            callbacks, entry.callbacks = entry.callbacks, []  # each caller hears once
            for on_done in callbacks:
                self.waiting -= 1
                try:
                    on_done(error)
                except Exception:  # a caller's bug must not stall the partition's sender
                    log.exception("publish callback failed")


def _headers_size(headers: Sequence[tuple[str, bytes]]) -> int:
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
    return size
