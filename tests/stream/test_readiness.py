"""Readiness: partitions held and a broker that answers, both needed for /readyz."""

from __future__ import annotations

import asyncio

from member_fakes import FakeConsumer

from stream.kafka.readiness import Readiness


async def test_ready_needs_partitions_and_an_answering_broker():
    """Not ready before an assignment, ready with one, not ready while handing over."""
    readiness = Readiness()
    assert not readiness.ready.is_set()
    readiness.set_member(True)
    assert readiness.ready.is_set()
    readiness.set_broker(False, "gone")
    assert not readiness.ready.is_set()
    readiness.set_broker(True)
    readiness.set_member(False)
    assert not readiness.ready.is_set()


async def test_a_stalled_metadata_request_makes_the_member_not_ready_until_it_answers():
    """A frozen broker turns readiness off after the stall time; an answer turns it back on."""
    readiness, consumer = Readiness(), FakeConsumer()
    readiness.set_member(True)
    consumer.freeze()
    watch = asyncio.create_task(readiness.watch_broker(consumer, stall_s=0.05, interval_s=0.01))
    try:
        async with asyncio.timeout(5):
            while readiness.ready.is_set():
                await asyncio.sleep(0.01)
            consumer.thaw()
            await readiness.ready.wait()
    finally:
        watch.cancel()


async def test_a_failing_metadata_request_makes_the_member_not_ready():
    """An error answer (not only silence) counts as a broker that is not answering."""
    readiness, consumer = Readiness(), FakeConsumer()
    readiness.set_member(True)
    consumer.topic_error = OSError("connection refused")
    watch = asyncio.create_task(readiness.watch_broker(consumer, stall_s=1, interval_s=0.01))
    try:
        async with asyncio.timeout(5):
            while readiness.ready.is_set():
                await asyncio.sleep(0.01)
    finally:
        watch.cancel()
