"""Durations as responses report them: milliseconds to the microsecond."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import to_microsecond


@given(st.floats(min_value=0.0, max_value=1e9, allow_nan=False))
def test_a_duration_is_kept_to_the_microsecond_as_round_would(ms: float) -> None:
    kept = to_microsecond(ms)
    assert abs(kept - ms) <= 0.0005 + 1e-9 * max(1.0, ms)  # at most half a microsecond away
    assert math.isclose(kept * 1000, round(kept * 1000), abs_tol=1e-6 * max(1.0, kept))
    if abs(ms * 1000 - math.floor(ms * 1000) - 0.5) > 1e-6:  # away from a tie: round's result
        assert kept == round(ms, 3)


def test_examples() -> None:
    assert to_microsecond(12.3456789) == 12.346
    assert to_microsecond(0.0004) == 0.0
    assert to_microsecond(0.0006) == 0.001
    assert to_microsecond(250.0) == 250.0
