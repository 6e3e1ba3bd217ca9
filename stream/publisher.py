"""Publishing with broker acknowledgement: the step after which an offset may be committed."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed
from aiokafka.structs import RecordMetadata
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from stream.records import Delivery

log = logging.getLogger(__name__)


class PublishRejected(Exception):
    """The broker or client refused a record for good (too large, not authorised...).

    Retrying cannot help, so the caller must dead-letter the event instead of waiting.
    """

    def __init__(self, topic: str, error: KafkaError) -> None:
        super().__init__(f"publish to {topic} rejected: {type(error).__name__}: {error}")
        self.topic = topic
        self.error = error


def is_retriable(error: BaseException) -> bool:
    """Errors worth waiting out: the ones Kafka marks retriable, plus client-side timeouts
    (aiokafka marks an expired batch as not retriable, but it is what a broker outage gives)."""
    return isinstance(error, KafkaError) and (
        error.retriable or isinstance(error, KafkaTimeoutError))


class Publisher:
    """Sends deliveries and waits for the broker's acknowledgement, retrying until it comes.

    ``publish`` blocks while the broker is unreachable (backing off up to ``max_backoff_s``
    between attempts): an unacknowledged response must never let its offset be committed, and
    giving up would lose the event. It raises ``PublishRejected`` for an error no retry can fix,
    ``ProducerClosed`` once the producer is stopped, and on cancellation.
    """

    def __init__(self, producer: AIOKafkaProducer, *, max_backoff_s: float = 5.0) -> None:
        self._producer = producer
        self._max_backoff_s = max_backoff_s
        self.failed_attempts = 0

    async def publish(self, delivery: Delivery) -> RecordMetadata:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retriable),
            wait=wait_exponential_jitter(multiplier=0.1, max=self._max_backoff_s),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send(delivery)
        except ProducerClosed:
            raise
        except KafkaError as error:
            raise PublishRejected(delivery.topic, error) from error
        raise AssertionError("unreachable: tenacity retries until success or cancellation")

    async def _send(self, delivery: Delivery) -> RecordMetadata:
        pending = await self._producer.send(
            delivery.topic, value=delivery.value, key=delivery.key, headers=delivery.headers
        )
        return await pending

    def _log_retry(self, state: object) -> None:
        self.failed_attempts += 1
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        log.warning("publish failed, retrying: %s", error)
