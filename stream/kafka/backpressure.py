"""Backpressure: pause every owned partition while too much is buffered, resume below half.

Buffered = events the engine holds (queued, waiting for a session slot, in flight) plus dead
letters not yet acknowledged. Pausing stops fetching without leaving the group, so memory stays
bounded and nothing is dropped. The half-way resume keeps the member from flapping.
"""

from __future__ import annotations

from stream.kafka.client import GroupConsumer
from stream.observability.counters import EventCounters

__all__ = ["Backpressure"]


class Backpressure:
    def __init__(self, consumer: GroupConsumer, limit: int, counters: EventCounters) -> None:
        self._consumer = consumer
        self._limit = limit
        self._counters = counters
        self.paused = False

    def apply(self, buffered: int) -> None:
        if not self.paused and buffered >= self._limit:
            self._consumer.pause(*self._consumer.assignment())
            self.paused = True
            self._counters.pauses += 1
        elif self.paused and buffered <= self._limit // 2:
            self._consumer.resume(*self._consumer.assignment())
            self.paused = False
