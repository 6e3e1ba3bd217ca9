"""A relay that forwards each record the moment it is fetched: the broker's share of a latency.

It reads the event id and sends a small response at once: no sessions, no processors, no
waiting on acknowledgements, no commits. What remains is two broker hops with nothing between
them, which is what the latency scenario sets the members against, to tell the broker's share
of a latency from chatstream's (one run each, so within the noise of a p99 on a shared
machine). Not a consumer to deploy: it keeps no at-least-once promise. Configured by the same
environment variables as ``chatstream run``. Stops on SIGTERM.
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
    # No linger: a member's answers leave as soon as their partition has no batch in flight.
    producer = AIOKafkaProducer(**{**producer_config(settings), "linger_ms": 0})
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200,
                                             max_records=settings.max_poll_records)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    response = {"in_reply_to": event["event_id"], "bot_id": event["bot_id"],
                                "channel_id": event["channel_id"], "reply": "ok"}
                    await producer.send(settings.response_topic, orjson.dumps(response),
                                        key=record.key)
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    # On the members' event loop and with their garbage collector settings, like for like.
    settings = load_settings()
    tune_garbage_collector(settings.gc_young_threshold)
    run_on_loop(main(), settings.event_loop)
