"""The writes of a dead-letter replay: each record to the inbound topic, then, for each one the
broker acknowledged, a marker into the partition of the dead-letter topic it came from.

Every ack is awaited, all of them within ``timeout_s``; the outcome of each record comes back in
order. A marker is written only after its record's ack, so a failure in between repeats a replay
rather than losing one. Raises ``TopicUnavailable`` when no producer can be started (nothing was
sent then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from stream.kafka.config import broker_failure, producer_config
from stream.kafka.dead_letter import REPLAY_MARKER_HEADER
from stream.ops.topic_read import TopicUnavailable
from stream.settings import Settings

_CONNECT_TIMEOUT_S = 15.0
_MARKER_KEY = b"chatstream.replay-marker"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Replay:
    """One record to re-publish, and the dead letter (partition, offset) it comes from."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    dlq_partition: int
    dlq_offset: int
    partition: int | None = None  # the inbound partition to publish to; None: by the key


@dataclass(frozen=True, slots=True)
class Published:
    """``destination`` ("topic/partition/offset") once acknowledged; ``error`` says why it was
    not, or, with a destination, why its marker was not written."""

    destination: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Send:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None


async def publish_replays(settings: Settings, replays: Sequence[Replay], *,
                          timeout_s: float = 60.0) -> list[Published]:
    """Publish ``replays`` to the inbound topic and mark the acknowledged ones (see above)."""
    # acks=all whatever the members use: a marker says its record was replayed for good (with
    # acks=0 no send is acknowledged at all, and every record would be replayed on each run).
    producer = AIOKafkaProducer(**{**producer_config(settings, "chatstream-dlq-replay"),
                                   "acks": "all"})
    try:
        try:
            await asyncio.wait_for(producer.start(), _CONNECT_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            raise TopicUnavailable(broker_failure(settings, exc)) from None
        # A partition the topic no longer has (it was recreated smaller) falls back to the key.
        try:
            existing = await asyncio.wait_for(producer.partitions_for(settings.inbound_topic),
                                              _CONNECT_TIMEOUT_S)
        except (KafkaError, TimeoutError):
            existing = set()
        acks = await _send_all(producer, [
            _Send(settings.inbound_topic, r.key, r.value, r.headers,
                  r.partition if r.partition in existing else None) for r in replays], timeout_s)
        results = [Published(_address(ack)) if isinstance(ack, RecordMetadata)
                   else Published(None, ack) for ack in acks]
        acked = [i for i, result in enumerate(results) if result.destination is not None]
        marks = await _send_all(producer, [
            _marker(settings.dlq_topic, replays[i], results[i].destination or "")
            for i in acked], timeout_s)
        for i, mark in zip(acked, marks, strict=True):
            if not isinstance(mark, RecordMetadata):
                results[i] = Published(results[i].destination, f"its replay marker was not "
                                       f"written ({mark}): a later replay would repeat it")
        return results
    finally:
        await producer.stop()


def _marker(dlq_topic: str, replay: Replay, destination: str) -> _Send:
    # Same partition as the dead letter: retention, which goes partition by partition in
    # offset order, can then never drop the marker while keeping the record it marks.
    value = orjson.dumps({"replayed": f"{dlq_topic}/{replay.dlq_partition}/{replay.dlq_offset}",
                          "to": destination, "at": datetime.now(UTC).isoformat()})
    mark = f"{replay.dlq_partition}/{replay.dlq_offset}".encode()
    return _Send(dlq_topic, _MARKER_KEY, value, [(REPLAY_MARKER_HEADER, mark)],
                 replay.dlq_partition)


async def _send_all(producer: AIOKafkaProducer, sends: Sequence[_Send], timeout_s: float
                    ) -> list[RecordMetadata | str]:
    """Queue every send, then wait for their acks; an error text where there is none."""
    queued: list[asyncio.Future[RecordMetadata] | str] = []
    for send in sends:
        try:
            queued.append(await producer.send(send.topic, value=send.value, key=send.key,
                                              headers=send.headers, partition=send.partition))
        except KafkaError as exc:
            queued.append(_text(exc))
    pending = [f for f in queued if not isinstance(f, str)]
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)
    return [_outcome(f, timeout_s) for f in queued]


def _outcome(queued: asyncio.Future[RecordMetadata] | str, timeout_s: float
             ) -> RecordMetadata | str:
    if isinstance(queued, str):
        return queued
    if not queued.done():
        queued.cancel()
        return f"no acknowledgement within {timeout_s}s (it may still arrive)"
    error = queued.exception()
    return _text(error) if error is not None else queued.result()


def _address(metadata: RecordMetadata) -> str:
    return f"{metadata.topic}/{metadata.partition}/{metadata.offset}"


def _text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
