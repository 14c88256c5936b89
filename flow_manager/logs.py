"""Log lines: today's text, or one JSON object a line (`--log-format json`) for a log pipeline.

A JSON line has `time` (ISO 8601, UTC, milliseconds), `level`, `logger`, `message`, and when known the
`event` (the Socket.IO request or `reconcile`) and `container_id` of the task that logged it
(controller/tracing.py's log fields) and the `trace_id`/`span_id` of its current span (tracing on).
The message is the same text as in the text format: the redaction rules are those of every log call
(no environment values, message contents or tokens are ever logged), not the formatter's.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from opentelemetry import trace

from controller.clock import iso
from controller.tracing import current_log_fields

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(current_log_fields())
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"], line["span_id"] = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class NoFrames(logging.Filter):
    """Drops the websockets library's debug lines: they quote each frame, so a client's token (the connect
    packet), environment values and message contents would reach the log at --log-level debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and f"{os.sep}websockets{os.sep}" in record.pathname)


def configure(level: str, log_format: str = "text") -> None:
    """The root handler on stderr (uvicorn's own loggers propagate to it when the format is json)."""
    logging.getLogger("uvicorn.error").addFilter(NoFrames())  # the logger websockets is given, in either format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if log_format == "json":
        logging.captureWarnings(True)  # a library's warning is a line of the log too, not loose text on stderr
