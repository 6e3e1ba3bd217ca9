"""The references a member is measured against. Both are configured by the same environment
variables as ``chatstream run`` (topics, group, bootstrap), run on the members' event loop with
their garbage-collector settings (like for like), and stop on SIGTERM.

- ``minimal`` (the default): a minimal sequential aiokafka loop. Consume a batch, decode each
  record, build and send one small JSON response per record, wait for the batch's acks,
  commit, repeat. No sessions, no priorities, no processors, no tracing: what a careful
  hand-written consumer does, at-least-once.
- ``relay``: the same responses, each sent the moment its record is fetched, with no waiting
  on acknowledgements and no commits. What remains is two broker hops with nothing between
  them, which the latency scenario sets the members against, to tell the broker's share of a
  latency from chatstream's. Not a consumer to deploy: it keeps no at-least-once promise.

``python -m stream.devtools.bench.reference [minimal|relay]``
"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.app.service import run_on_loop, tune_garbage_collector
from stream.kafka.config import consumer_config, producer_config
from stream.settings import load_settings

MODES = ("minimal", "relay")


async def main(mode: str) -> None:
    relay = mode == "relay"
    settings = load_settings()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(settings.inbound_topic, **consumer_config(settings))
    # No linger, as a member: its answers leave as soon as their partition has no batch in
    # flight (it closes each batch), where a linger would hold every batch of the loop 5 ms.
    producer = AIOKafkaProducer(**{**producer_config(settings), "linger_ms": 0})
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
            if acks and not relay:
                await asyncio.gather(*acks)
                await consumer.commit()
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "minimal"
    if chosen not in MODES:
        sys.exit(f"unknown mode {chosen!r}: one of {', '.join(MODES)}")
    loaded = load_settings()
    tune_garbage_collector(loaded.gc_young_threshold)
    run_on_loop(main(chosen), loaded.event_loop)
