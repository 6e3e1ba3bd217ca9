"""Publishing with broker acknowledgement: the step after which an offset may be committed."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import RecordMetadata
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from stream.kafka.records import Delivery

log = logging.getLogger(__name__)


# Errors about the record itself: the same record can never pass, while other records can.
# Every other error (a topic not authorised, an unknown topic, a broker away...) concerns all
# records alike, so it is waited out: dead-lettering would fail the same way, and completing
# offsets after it would lose events.
RECORD_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError,
                 InvalidTimestampError, CorruptRecordException)


class PublishRejected(Exception):
    """The broker or client refused this record for good (too large, corrupt...).

    Retrying cannot help, so the caller dead-letters the event instead of waiting.
    """

    def __init__(self, topic: str, error: KafkaError) -> None:
        super().__init__(f"publish to {topic} rejected: {type(error).__name__}: {error}")
        self.topic = topic
        self.error = error


def is_waited_out(error: BaseException) -> bool:
    """Errors ``publish`` retries: every Kafka error except one about the record itself, and
    except ``ProducerClosed`` (the member is stopping)."""
    return isinstance(error, KafkaError) and not isinstance(error, (*RECORD_ERRORS, ProducerClosed))


class Publisher:
    """Sends deliveries and waits for the broker's acknowledgement, retrying until it comes.

    ``publish`` blocks while the broker is unreachable (backing off up to ``max_backoff_s``
    between attempts): an unacknowledged response must never let its offset be committed, and
    giving up would lose the event. It raises ``PublishRejected`` when the record itself can
    never be accepted, ``ProducerClosed`` once the producer is stopped, and on cancellation.
    """

    def __init__(self, producer: AIOKafkaProducer, *, max_backoff_s: float = 5.0) -> None:
        self._producer = producer
        self._max_backoff_s = max_backoff_s
        self.failed_attempts = 0

    async def publish(self, delivery: Delivery) -> RecordMetadata:
        # Call first: the retry machinery is built only once a send failed in a way to wait out.
        try:
            return await self._send(delivery)
        except RECORD_ERRORS as error:
            raise PublishRejected(delivery.topic, error) from error
        except KafkaError as error:
            if not is_waited_out(error):
                raise
            self._log_failure(error)
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_waited_out),
            wait=wait_exponential_jitter(multiplier=0.1, max=self._max_backoff_s),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send(delivery)
        except RECORD_ERRORS as error:
            raise PublishRejected(delivery.topic, error) from error
        raise AssertionError("unreachable: tenacity retries until success or cancellation")

    async def _send(self, delivery: Delivery) -> RecordMetadata:
        return await (await self._enqueue(delivery))

    async def _enqueue(self, delivery: Delivery) -> asyncio.Future[RecordMetadata]:
        return await self._producer.send(  # type: ignore[no-any-return]
            delivery.topic, value=delivery.value, key=delivery.key, headers=delivery.headers,
            partition=delivery.partition)

    def _log_retry(self, state: object) -> None:
        outcome = getattr(state, "outcome", None)
        self._log_failure(outcome.exception() if outcome is not None else None)

    def _log_failure(self, error: BaseException | None) -> None:
        self.failed_attempts += 1
        if isinstance(error, KafkaError) and not error.retriable:
            # Not about this record and not passing by itself (a missing ACL, an unknown topic):
            # someone has to act, and nothing is answered meanwhile.
            log.error("publish refused, retrying until it is fixed: %r", error)
        else:
            log.warning("publish failed, retrying: %r", error)
