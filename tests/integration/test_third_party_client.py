"""A bot written with another Kafka client (confluent-kafka, i.e. librdkafka) is served too."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from kafka_helpers import running_chatstream, simulated

confluent_kafka = pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for event in events:
        producer.produce(topic, key=event["channel_id"].encode(), value=orjson.dumps(event))
    assert producer.flush(30) == 0, "librdkafka could not deliver every event"


def _consume_responses(bootstrap: str, topic: str, group: str, wanted: int,
                       timeout_s: float) -> list[dict]:
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([topic])
    responses: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(responses) < wanted and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            responses.append(orjson.loads(message.value()))
    finally:
        consumer.close()
    return responses


async def test_librdkafka_bot_gets_answers(settings_for):
    """Events produced by confluent-kafka are answered; it reads the responses with its own group."""
    settings = settings_for()
    events = simulated(60, seed=31)
    async with running_chatstream(settings):
        await asyncio.to_thread(_produce, settings.kafka_bootstrap_servers,
                                settings.inbound_topic, events)
        responses = await asyncio.to_thread(
            _consume_responses, settings.kafka_bootstrap_servers, settings.response_topic,
            f"{settings.group_id}-bot", len(events), 60.0)
    assert sorted(r["in_reply_to"] for r in responses) == sorted(e["event_id"] for e in events)
