"""Logging set-up: human-readable by default, one JSON object per line with
CHATSTREAM_LOG_FORMAT=json, each record carrying the active span's trace and span ids."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson
from opentelemetry import trace


def _trace_ids() -> tuple[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = _trace_ids()
        if ids:
            document["trace_id"], document["span_id"] = ids
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(document).decode()
        except orjson.JSONEncodeError:  # a lone surrogate (text from a bad record): escape it
            return orjson.dumps({k: v.encode("utf-8", "backslashreplace").decode()
                                 for k, v in document.items()}).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _trace_ids()
        return f"{line} [trace_id={ids[0]}]" if ids else line


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
