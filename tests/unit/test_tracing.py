"""Trace context on records and in logs; the tracing and logging settings (docs/tracing.md)."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider

from controller.tracing import current_log_fields, format_traceparent, log_fields, parse
from flow_manager import logs, telemetry
from store import ContainerSpec, DesiredState, MemoryStore
from store.journal import record_from_json, record_to_json

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_traceparent_round_trips() -> None:
    context = parse(TRACEPARENT)
    assert context is not None and context.is_remote and context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert format_traceparent(context) == TRACEPARENT


@pytest.mark.parametrize(
    "bad",
    [
        TRACEPARENT.upper(),
        TRACEPARENT + "\n",
        "01" + TRACEPARENT[2:],
        "00-" + "0" * 32 + TRACEPARENT[35:],
        TRACEPARENT[:36] + "0" * 16 + "-01",
        TRACEPARENT + "-extra",
        None,
        42,
    ],
)
def test_anything_else_is_no_trace_context(bad: object) -> None:
    assert parse(bad) is None


def test_the_record_keeps_its_requests_trace_through_the_journal() -> None:
    store = MemoryStore()
    record = store.create(ContainerSpec(image="flow:latest", name="traced"), DesiredState.CREATED, trace_context=TRACEPARENT)
    assert record_from_json(json.loads(json.dumps(record_to_json(record)))).trace_context == TRACEPARENT
    old_line = record_to_json(record)
    del old_line["trace_context"]  # journals written before the field existed
    assert record_from_json(old_line).trace_context is None
    assert store.update(record.id, desired=DesiredState.RUNNING, trace_context=None).trace_context is None


def test_log_fields_nest_and_end_with_their_block() -> None:
    with log_fields(event="start_container", container_id="abc"):
        with log_fields(event="reconcile"):
            assert current_log_fields() == {"event": "reconcile", "container_id": "abc"}
        assert current_log_fields() == {"event": "start_container", "container_id": "abc"}
    assert current_log_fields() == {}


def test_a_json_line_has_the_fields_and_the_current_span() -> None:
    formatter = logs.JsonFormatter()
    tracer = TracerProvider().get_tracer("test")  # not installed globally: only its context is current
    with tracer.start_as_current_span("start_container") as span, log_fields(event="start_container", container_id="abc"):
        record = logging.LogRecord("flow_manager.api", logging.INFO, __file__, 1, "%s answered", ("start_container",), None)
        line = json.loads(formatter.format(record))
    context = span.get_span_context()
    assert line["message"] == "start_container answered" and line["level"] == "info" and line["logger"] == "flow_manager.api"
    assert (line["event"], line["container_id"]) == ("start_container", "abc")
    assert (line["trace_id"], line["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert line["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(formatter.format(failed))
    assert "ValueError: boom" in line["exception"] and "trace_id" not in line


def test_websocket_frames_never_reach_the_log() -> None:
    frame = logging.LogRecord("uvicorn.error", logging.DEBUG, "/x/site-packages/websockets/legacy/protocol.py", 1, "< TEXT %r", ("40{}",), None)
    own = logging.LogRecord("uvicorn.error", logging.DEBUG, "/x/site-packages/uvicorn/server.py", 1, "debug", (), None)
    assert not logs.NoFrames().filter(frame) and logs.NoFrames().filter(own)


def test_exporter_names() -> None:
    for name in telemetry.EXPORTERS:
        telemetry.check(name)
    with pytest.raises(telemetry.TelemetryConfigError, match="one of none, console, otlp, otlp-grpc"):
        telemetry.check("jaeger")


def test_with_tracing_off_a_request_makes_no_span_but_keeps_its_log_fields() -> None:
    from opentelemetry import trace

    from api.tracing import RequestSpan
    from controller import tracing

    assert not tracing.enabled()  # nothing in the unit tests turns it on: the default
    with RequestSpan("start_container", "abc", TRACEPARENT, None) as span:
        assert current_log_fields() == {"event": "start_container", "container_id": "abc"}
        assert not trace.get_current_span().get_span_context().is_valid
        span.failed("container_not_found", "no such container")  # nothing to tell: no error
    assert current_log_fields() == {}
