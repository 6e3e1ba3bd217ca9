"""The reference a member is measured against: a minimal sequential aiokafka loop.

Consume a batch, decode each record, build and send one small JSON response per record, wait
for the batch's acks, commit, repeat. No sessions, no priorities, no processors, no tracing:
what a careful hand-written consumer does, at-least-once. Configured by the same environment
variables as ``chatstream run`` (topics, group, bootstrap). Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.app.service import run_on_loop, tune_garbage_collector
from stream.kafka.config import consumer_config, producer_config
from stream.settings import load_settings


async def main() -> None:
    settings = load_settings()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(settings.inbound_topic, **consumer_config(settings))
    producer = AIOKafkaProducer(**producer_config(settings))
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200,
                                             max_records=settings.max_poll_records)
            acks = []
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    response = {"in_reply_to": event["event_id"], "bot_id": event["bot_id"],
                                "channel_id": event["channel_id"], "reply": "ok"}
                    acks.append(await producer.send(settings.response_topic,
                                                    orjson.dumps(response), key=record.key))
            if acks:
                await asyncio.gather(*acks)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    # On the members' event loop (CHATSTREAM_EVENT_LOOP) and with their garbage collector
    # settings, so the two are compared like for like.
    settings = load_settings()
    tune_garbage_collector(settings.gc_young_threshold)
    run_on_loop(main(), settings.event_loop)
