"""CHATSTREAM_LOG_FORMAT=json: one JSON object per line, with the active span's ids."""

from __future__ import annotations

import logging

import orjson

from infra.logs import configure_logging
from stream.observability.tracing import tracer
from stream.settings import load_settings


def test_json_logs_are_one_object_per_line_with_trace_ids(memory_spans, restore_logging, capsys):
    """A line logged inside a span carries its trace_id/span_id; one outside carries none."""
    configure_logging(load_settings(log_format="json").log_format, "INFO")
    log = logging.getLogger("chatstream.test")
    with tracer().start_as_current_span("work") as span:
        log.info("inside %s", "the span")
        try:
            raise ValueError("two\nlines")
        except ValueError:
            log.exception("failed")
    log.warning("outside")
    lines = capsys.readouterr().err.splitlines()

    documents = [orjson.loads(line) for line in lines]
    assert [d["message"] for d in documents] == ["inside the span", "failed", "outside"]
    context = span.get_span_context()
    assert documents[0]["trace_id"] == format(context.trace_id, "032x")
    assert documents[0]["span_id"] == format(context.span_id, "016x")
    assert documents[0]["level"] == "INFO" and documents[0]["logger"] == "chatstream.test"
    assert "ValueError: two\nlines" in documents[1]["exception"]
    assert "trace_id" not in documents[2]


def test_a_message_with_a_lone_surrogate_is_logged_escaped_not_lost(restore_logging, capsys):
    """Text that cannot be UTF-8 (a lone surrogate, from a record's bad bytes) still makes its
    line, with the surrogate escaped, instead of a logging error."""
    configure_logging("json", "INFO")
    logging.getLogger("chatstream.test").warning("content %s", "bad \ud800 text")
    err = capsys.readouterr().err
    assert "Logging error" not in err
    (document,) = [orjson.loads(line) for line in err.splitlines()]
    assert document["message"] == "content bad \\ud800 text"
