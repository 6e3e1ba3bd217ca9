"""Poison input: every malformed record is dead-lettered with its reason, good ones are answered,
and the worker survives all of it."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from poison_corpus import CASES
from workers import OutputReader, SendLog, analyse, settle

from stream.botkit.client import BotClient
from stream.devtools.bots import chat_events
from stream.kafka.dead_letter import reason_of

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

GOOD_BETWEEN = 3  # good events published between two poison records


async def test_poison_records_go_to_the_dlq_and_the_worker_survives(pool_factory):
    """Each of 60+ malformed records lands in the DLQ unchanged with type, stage, message and
    source headers; good events interleaved with them are all answered; the worker stays up."""
    pool = await pool_factory(partitions=4)
    settings = pool.settings
    worker = pool.spawn("poisoned")
    await worker.wait_ready()
    good = chat_events(seed=505, count=GOOD_BETWEEN * (len(CASES) + 1), channels=12)
    sent = SendLog()
    placed: dict[tuple[int, int], int] = {}  # (partition, offset) -> index into CASES
    async with OutputReader(settings) as reader:
        async with BotClient(settings, client_id="poisoner") as client:
            acks: list[tuple[object, asyncio.Future]] = []  # type: ignore[type-arg]
            for index in range(len(CASES) + 1):
                for _ in range(GOOD_BETWEEN):
                    event = next(good)
                    sent.events.append(event)
                    acks.append((event["event_id"], await client.publish(event)))
                if index < len(CASES):
                    case = CASES[index]
                    acks.append((index, await client.publish_raw(case.value, key=case.key)))
            for what, ack in acks:
                metadata = await ack
                where = (metadata.partition, metadata.offset)
                if isinstance(what, int):
                    placed[where] = what
                    sent.raw.append(where)
                else:
                    sent.where[str(what)] = where
        await settle(settings, reader, sent)
        figures = analyse(sent, reader)
        dead_letters = list(reader.dead_letters)

    stats = await worker.stats()
    print(f"\n[poison] {len(CASES)} poison records, {len(dead_letters)} dead letters; good: "
          f"{figures.line()}; worker alive={worker.alive()}")
    assert worker.alive(), f"the worker died on poison input\n{worker.log_tail()}"
    assert await worker.ready() is True
    assert figures.lost == [] and figures.duplicates == 0, figures.line()
    assert stats is not None and stats["kafka"]["counters"]["dead_lettered"] == len(CASES)

    seen: Counter[str] = Counter()
    for record in dead_letters:
        reason = reason_of(record.headers)
        where = (int(reason["source.partition"]), int(reason["source.offset"]))
        assert reason["source.topic"] == settings.inbound_topic
        assert where in placed, f"dead letter for an offset that was not poison: {reason}"
        case = CASES[placed[where]]
        seen[case.name] += 1
        assert reason["error.stage"] == case.stage, f"{case.name}: got {reason}"
        assert reason["error.type"] in case.error_type.split("|"), f"{case.name}: got {reason}"
        assert reason["error.message"], case.name
        assert record.key == case.key, case.name
        assert (record.value or b"") == (case.value or b""), f"{case.name}: value changed"
    missing = [case.name for case in CASES if seen[case.name] == 0]
    doubled = [name for name, count in seen.items() if count > 1]
    assert missing == [] and doubled == [], f"missing {missing}, dead-lettered twice {doubled}"
