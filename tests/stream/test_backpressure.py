"""The buffered limit against the in-flight bound: a limit that would starve the engine is named."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.kafka.backpressure import starving_limit
from stream.settings import load_settings


@given(st.integers(1, 100_000), st.integers(1, 100_000))
def test_a_limit_below_twice_the_in_flight_bound_is_named_with_the_fix(buffered, in_flight):
    why = starving_limit(buffered, in_flight)
    if buffered >= 2 * in_flight:
        assert why is None
    else:
        assert why is not None
        assert f"CHATSTREAM_MAX_BUFFERED={buffered}" in why and str(2 * in_flight) in why


def test_the_defaults_do_not_starve():
    settings = load_settings()
    assert starving_limit(settings.max_buffered, settings.max_in_flight) is None
