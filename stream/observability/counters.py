"""The one set of event counters a member keeps; every layer increments its own fields.

The Kafka member counts what it consumes, pauses and commits; the sink counts how each event
ended (answered, degraded, failed, dead-lettered, undeliverable). ``/metrics``, ``/stats`` and
the engine's performance stats all read this object, so no figure is counted twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["EventCounters"]


@dataclass(slots=True)
class EventCounters:
    consumed: int = 0  # inbound records taken from the broker
    answered: int = 0  # responses acknowledged (or, without Kafka, handed to the caller)
    degraded: int = 0  # answered with at least one processor not ok
    failed: int = 0  # decoded events that could not be answered and were dead-lettered
    dead_lettered: int = 0  # dead letters acknowledged by the broker
    undeliverable: int = 0  # records neither answered nor dead-lettered (logged, offset done)
    states_refused: int = 0  # answers whose session state record was refused for good (logged)
    commits: int = 0  # offset commits that landed
    pauses: int = 0  # times backpressure paused the partitions
    sessions_restored: int = 0  # sessions installed from the changelog on assignments
    restore_seconds: float = 0.0  # time spent restoring them, all assignments together

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
