"""Which publish errors are waited out and which reject the record (no broker needed: the
producer below fails on purpose; tests/integration/test_unanswerable.py covers the real one)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from stream.kafka.publisher import Publisher, PublishRejected
from stream.kafka.records import Delivery


class FailingProducer:
    """Raises the given errors from ``send``, one per call, then acknowledges."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def send(self, topic: str, **_: Any) -> asyncio.Future[str]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        acked: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        acked.set_result(f"acked {topic}")
        return acked


DELIVERY = Delivery(topic="out", key=b"k", value=b"v")


@pytest.mark.parametrize("error", [
    KafkaConnectionError(), KafkaTimeoutError(), UnknownTopicOrPartitionError(),
    TopicAuthorizationFailedError(),
])
async def test_errors_not_about_the_record_are_waited_out(error):
    """Broker away, client timeouts, and errors about the topic (which would fail every record,
    dead letters included) are retried until the record is acknowledged."""
    producer = FailingProducer(error, error)
    publisher = Publisher(producer, max_backoff_s=0.01)  # type: ignore[arg-type]
    assert await publisher.publish(DELIVERY) == "acked out"
    assert producer.calls == 3 and publisher.failed_attempts == 2


async def test_a_record_that_can_never_pass_is_rejected_at_once():
    producer = FailingProducer(MessageSizeTooLargeError("too big"))
    publisher = Publisher(producer, max_backoff_s=0.01)  # type: ignore[arg-type]
    with pytest.raises(PublishRejected) as rejected:
        await publisher.publish(DELIVERY)
    assert isinstance(rejected.value.error, MessageSizeTooLargeError)
    assert "publish to out rejected: MessageSizeTooLargeError" in str(rejected.value)
    assert producer.calls == 1


async def test_a_closed_producer_is_not_a_rejection():
    """Closing happens on stop: the record is left for the next owner, not dead-lettered."""
    publisher = Publisher(FailingProducer(ProducerClosed()), max_backoff_s=0.01)  # type: ignore[arg-type]
    with pytest.raises(ProducerClosed):
        await publisher.publish(DELIVERY)
