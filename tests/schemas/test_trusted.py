"""``trusted`` builds the same models as pydantic, for the models and values the engine uses."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import encode
from schemas.events import (
    SCHEMA_VERSION,
    Priority,
    ProcessorOutcome,
    ProcessorStatus,
    ResponseEvent,
)
from schemas.trusted import trusted

json_data = st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
                            max_size=3)  # step data is checked JSON (`as_json`)


def test_the_models_built_trusted_hold_no_private_or_extra_state():
    for model in (ProcessorOutcome, ResponseEvent):
        assert model.__private_attributes__ == {}
        assert model.model_config.get("extra") in (None, "ignore", "forbid")


@given(st.sampled_from(ProcessorStatus), json_data, st.none() | st.text(max_size=10),
       st.integers(1, 5), st.floats(0, 1e4))
def test_an_outcome_built_trusted_equals_the_validated_one(status, data, error, attempts, ms):
    values = {"status": status, "data": data, "error": error, "attempts": attempts,
              "duration_ms": ms}
    assert list(values) == list(ProcessorOutcome.model_fields)
    built, validated = trusted(ProcessorOutcome, dict(values)), ProcessorOutcome(**values)
    assert built == validated and built.model_dump() == validated.model_dump()
    assert built.model_fields_set == validated.model_fields_set
    assert encode(built) == encode(validated)


@given(st.text(max_size=8), st.none() | st.text(max_size=20), st.sampled_from(Priority),
       st.lists(st.text(max_size=5), max_size=3))
def test_a_response_built_trusted_equals_the_validated_one(event_id, reply, priority, degraded):
    outcome = ProcessorOutcome(status=ProcessorStatus.OK, data={"x": 1})
    values = {"response_id": "r", "in_reply_to": event_id, "bot_id": "b", "channel_id": "c",
              "user_id": "u", "session_id": "b/c/u", "priority": priority, "reply": reply,
              "analysis": {"emotion": outcome}, "degraded": degraded, "queued_ms": 1.5,
              "processing_ms": 2.25, "processed_at": datetime(2026, 1, 1, tzinfo=UTC),
              "schema_version": SCHEMA_VERSION}
    assert list(values) == list(ResponseEvent.model_fields)
    built, validated = trusted(ResponseEvent, dict(values)), ResponseEvent(**values)
    assert built == validated and built.model_dump() == validated.model_dump()
    assert encode(built) == encode(validated)
    assert ResponseEvent.model_validate_json(encode(built)) == validated
