"""The orjson/pydantic codec: strict types, limits, and one clear error per bad record."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    ChatEvent,
    DecodeError,
    InputLimits,
    MessageType,
    Priority,
    ResponseEvent,
    decode_event,
    encode,
    response_id_for,
)
from schemas.events import RESPONSE_NAMESPACE, chat_event_schema

VALID = {"event_id": "e1", "bot_id": "b", "channel_id": "c", "user_id": "u", "content": "hi"}


def _decode(**changes: object) -> ChatEvent:
    return decode_event(orjson.dumps({**VALID, **changes}))


def test_minimal_event_gets_defaults():
    """Optional fields default: message type, no priority, schema 1, timestamp about now."""
    event = _decode()
    assert event.message_type is MessageType.MESSAGE
    assert event.priority is None
    assert event.schema_version == 1
    assert abs((datetime.now(UTC) - event.timestamp).total_seconds()) < 5


def test_unknown_fields_are_ignored():
    """Producers may add fields without breaking consumers."""
    assert _decode(new_field={"x": 1}).event_id == "e1"


@pytest.mark.parametrize("stamp", [1_700_000_000, 1_700_000_000.5, "2023-11-14T22:13:20Z",
                                   "2023-11-14T22:13:20+00:00"])
def test_timestamp_accepts_iso_and_epoch_seconds(stamp):
    """ISO 8601 strings and epoch seconds both decode to the same aware instant."""
    assert int(_decode(timestamp=stamp).timestamp.timestamp()) == 1_700_000_000


@pytest.mark.parametrize("seconds", [20_000_000_001, 32_503_679_999, 25_000_000_000.25])
def test_epoch_seconds_are_seconds_up_to_the_year_3000(seconds):
    """A number is seconds over the whole accepted range, never taken for milliseconds."""
    stamp = _decode(timestamp=seconds).timestamp
    assert stamp.timestamp() == seconds and stamp.tzinfo is not None


@pytest.mark.parametrize("changes", [
    {"event_id": 123}, {"content": 5}, {"user_id": None}, {"bot_id": ""}, {"channel_id": "x" * 129},
    {"priority": "urgent"}, {"message_type": "email"}, {"schema_version": 2},
    {"timestamp": "1700000000"}, {"timestamp": "+1700000000"}, {"timestamp": "1.7e9"},
    {"timestamp": " 12 "}, {"timestamp": True}, {"timestamp": -5}, {"metadata": [1, 2]},
])
def test_wrong_values_fail_validation(changes):
    """Numbers are not coerced into strings; enums, ids and versions are checked."""
    with pytest.raises(DecodeError) as caught:
        _decode(**changes)
    assert caught.value.stage == "validation"
    assert caught.value.error_type == "ValidationError"


@pytest.mark.parametrize("field", ["event_id", "bot_id", "channel_id", "user_id", "content"])
def test_missing_required_field_is_named(field):
    """The error message names the missing field."""
    document = {k: v for k, v in VALID.items() if k != field}
    with pytest.raises(DecodeError) as caught:
        decode_event(orjson.dumps(document))
    assert field in caught.value.message


@pytest.mark.parametrize("raw,error_type", [
    (b"", "EmptyValue"), (None, "EmptyValue"), (b"{", "InvalidJSON"), (b"\xff\xfe", "InvalidJSON"),
    (b'{"a": NaN}', "InvalidJSON"), (b"[]", "NotAnObject"), (b'"text"', "NotAnObject"),
])
def test_unparseable_records(raw, error_type):
    """Empty, broken or non-object JSON gives a typed error."""
    with pytest.raises(DecodeError) as caught:
        decode_event(raw)
    assert caught.value.error_type == error_type


def test_limits_are_enforced_and_reported():
    """Content length, metadata size and depth, and record size each have a limit."""
    limits = InputLimits(max_content_chars=10, max_metadata_bytes=50, max_metadata_depth=2,
                         max_record_bytes=400)
    cases = [
        ({**VALID, "content": "x" * 11}, "11 characters, the limit is 10"),
        ({**VALID, "metadata": {"k": "v" * 60}}, "the limit is 50"),
        ({**VALID, "metadata": {"a": {"b": {"c": 1}}}}, "nested more than 2 levels deep"),
        ({**VALID, "pad": "z" * 500}, "the limit is 400"),
    ]
    for document, expected in cases:
        with pytest.raises(DecodeError) as caught:
            decode_event(orjson.dumps(document), limits)
        assert expected in caught.value.message


def test_hostile_nesting_is_a_validation_error():
    """Metadata nested 400 levels deep is rejected by the depth limit, not by a recursion error."""
    raw = b'{"event_id":"e","bot_id":"b","channel_id":"c","user_id":"u","content":"x","metadata":'
    raw += b'{"k":' * 400 + b"{}" + b"}" * 400 + b"}"
    with pytest.raises(DecodeError) as caught:
        decode_event(raw)
    assert caught.value.error_type == "ValidationError"
    assert "nested more than 5 levels deep" in caught.value.message


def test_explicit_priority_and_type_decode():
    """Priority and message type decode to their enums."""
    event = _decode(priority="critical", message_type="dm")
    assert event.priority is Priority.CRITICAL and event.message_type is MessageType.DM


def test_response_id_is_deterministic_and_distinct():
    """Same event -> same response id; other event or bot -> another id."""
    assert response_id_for("e1", "b") == response_id_for("e1", "b")
    assert response_id_for("e1", "b") != response_id_for("e2", "b")
    assert response_id_for("e1", "b") != response_id_for("e1", "b2")


def test_response_round_trips_through_the_codec():
    """encode() output parses back into an equal ResponseEvent."""
    response = ResponseEvent(
        response_id=response_id_for("e1", "b"), in_reply_to="e1", bot_id="b", channel_id="c",
        user_id="u", session_id="b/c/u", priority=Priority.HIGH, reply="ok", analysis={},
        degraded=[], queued_ms=1.5, processing_ms=2.5,
    )
    assert ResponseEvent.model_validate(orjson.loads(encode(response))) == response


identifiers = st.text(min_size=1, max_size=128)


@given(event_id=identifiers, bot_id=identifiers, content=st.text(max_size=4000))
def test_any_valid_event_round_trips(event_id, bot_id, content):
    """Every event within the limits survives encode -> decode unchanged."""
    event = ChatEvent(event_id=event_id, bot_id=bot_id, channel_id="c", user_id="u",
                      content=content)
    assert decode_event(encode(event)) == event


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(raw):
    """Any bytes either decode or raise DecodeError, never anything else."""
    with contextlib.suppress(DecodeError):
        decode_event(raw)


def _response_with(data: dict, when):  # type: ignore[no-untyped-def]
    from schemas.events import Priority, ProcessorOutcome, ProcessorStatus, ResponseEvent

    outcome = ProcessorOutcome.model_construct(status=ProcessorStatus.OK, data=data, error=None,
                                               attempts=1, duration_ms=0.5)
    return ResponseEvent.model_construct(
        response_id="r", in_reply_to="e", bot_id="b", channel_id="c", user_id="u",
        session_id="s", priority=Priority.LOW, reply="hi", analysis={"step": outcome},
        degraded=[], queued_ms=0.25, processing_ms=1.5, processed_at=when, schema_version=1)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False,
                                                                         allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10)


@given(data=st.dictionaries(st.text(max_size=5), _JSON, max_size=4),
       when=st.datetimes(timezones=st.just(UTC)))
def test_encode_matches_pydantic_json_mode(data, when):
    """The one-pass encoder yields the same JSON document as ``model_dump(mode="json")``."""
    response = _response_with(data, when)
    assert orjson.loads(encode(response)) == response.model_dump(mode="json")


@given(st.text(max_size=60), st.text(max_size=20))
def test_response_ids_are_the_uuid5_of_bot_and_event(event_id, bot_id):
    """The hand-rolled id equals the standard library's uuid5 of the same name."""
    expected = uuid.uuid5(RESPONSE_NAMESPACE, f"{bot_id}\x1f{event_id}")
    assert response_id_for(event_id, bot_id) == str(expected)


@pytest.mark.parametrize("changes", [
    {}, {"timestamp": 1_700_000_000}, {"timestamp": 1_700_000_000.5},
    {"timestamp": "2023-11-14T22:13:20Z"}, {"priority": "critical", "message_type": "dm"},
    {"metadata": {"thread": {"depth": [1, 2]}}},
])
def test_what_decodes_is_valid_by_the_published_json_schema(changes):
    """`chatstream schema` is the contract other languages build on: every form the decoder
    accepts validates against it (epoch seconds too, not only date-time strings)."""
    import jsonschema

    document = {**VALID, **changes}
    _decode(**changes)
    jsonschema.validate(document, chat_event_schema())


@pytest.mark.parametrize("stamp", [True, -5, 32_503_680_000])
def test_epoch_timestamps_the_decoder_refuses_the_schema_refuses_too(stamp):
    import jsonschema

    with pytest.raises(DecodeError):
        _decode(timestamp=stamp)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**VALID, "timestamp": stamp}, chat_event_schema())


def test_the_published_schema_bounds_content_as_the_decoder_does():
    """The configured limit, in characters (not bytes: JSON Schema counts code points too)."""
    import jsonschema

    limits = InputLimits(max_content_chars=10)
    schema = chat_event_schema(limits)
    at_limit = {**VALID, "content": "é" * 10}
    decode_event(orjson.dumps(at_limit), limits)
    jsonschema.validate(at_limit, schema)
    over = {**VALID, "content": "é" * 11}
    with pytest.raises(DecodeError):
        decode_event(orjson.dumps(over), limits)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(over, schema)
    assert "8192 bytes" in schema["properties"]["metadata"]["description"]
    assert "InputLimits" not in schema["description"]
