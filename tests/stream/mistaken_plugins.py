"""Plugin factories with the mistakes a plugin author makes, for ``test_plugins``."""

from __future__ import annotations

from typing import Any

from processors.examples import TextStatsProcessor


def needs_a_variable(settings: Any) -> list[Any]:
    raise KeyError("MY_SERVICE_URL")


def one_instance(settings: Any) -> Any:
    return TextStatsProcessor()


class NoTimeout:
    name = "no_timeout"
    kind = "inline"

    def process(self, context: Any) -> dict[str, Any]:
        return {}


def without_timeout(settings: Any) -> list[Any]:
    return [NoTimeout()]


def yielding(settings: Any) -> Any:
    yield TextStatsProcessor()
    raise KeyError("MY_SERVICE_URL")
