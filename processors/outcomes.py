"""What a step's call turns into: its outcome's data checked as JSON, its error described, and
the per-step counters behind the pipeline's stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic_core import PydanticSerializationError, to_jsonable_python

from schemas.events import ProcessorOutcome, ProcessorStatus

__all__ = ["StepStats", "as_json", "describe_error"]


@dataclass(slots=True)
class StepStats:
    calls: int = 0
    ok: int = 0
    failures: int = 0
    timeouts: int = 0
    skipped: int = 0
    retries: int = 0

    def count(self, outcome: ProcessorOutcome) -> None:
        status, attempts = outcome.status, outcome.attempts
        if attempts > 1:
            self.retries += attempts - 1
        if status is ProcessorStatus.OK:
            self.ok += 1
        elif status is ProcessorStatus.TIMEOUT:
            self.timeouts += 1
        elif status is ProcessorStatus.SKIPPED:
            self.skipped += 1
        else:
            self.failures += 1


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """Short ``"Type: message"`` text for an outcome."""
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_json(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it will be published (keys as strings, sets as lists...): checked here so
    that a step returning something JSON cannot hold fails alone, not the event's response."""
    try:
        orjson.dumps(data)  # the publishing encoder: plain JSON data passes as it is
        return data
    except TypeError:
        pass  # not plain: keys that are not strings, sets, models... converted below
    try:
        converted = to_jsonable_python(data)
        orjson.dumps(converted)  # it refuses integers beyond 64 bits
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise TypeError(f"process() returned data that is not JSON: {exc}") from None
    return converted  # type: ignore[no-any-return]
