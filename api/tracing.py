"""The span of one Socket.IO request: event, container id, outcome, error type; the client's trace continued.

A client continues its own trace by sending a W3C `traceparent`: in the request (the optional `traceparent`
field every request accepts) or once for the connection (`auth={"traceparent": ...}`); the request's wins.
The span's context is what a request writes on the record it changes (controller/tracing.py), so the
reconcile that converges the change links back to it. With tracing off the API's no-op tracer is used:
no SDK, no processing; only the log fields (event, container id) are kept for JSON logs.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from controller.tracing import log_fields, parse

tracer = trace.get_tracer("flow_manager.api")


class RequestSpan:
    """What the request path tells its span once it knows: the outcome, and the error type of a failure."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def succeeded(self) -> None:
        if self.span.is_recording():
            self.span.set_attribute("flow.outcome", "ok")

    def failed(self, error_type: str, message: str) -> None:
        if self.span.is_recording():
            self.span.set_attributes({"flow.outcome": "error", "error.type": error_type})
            self.span.set_status(Status(StatusCode.ERROR, message[:200]))


@contextlib.contextmanager
def request_span(operation: str, container_id: str | None, traceparent: object, connection_traceparent: str | None) -> Iterator[RequestSpan]:
    """The span of one request (a SERVER span named after the event); the client's context, if any, its parent."""
    remote = parse(traceparent) or parse(connection_traceparent)
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote)) if remote is not None else None
    attributes = {"rpc.system": "socket.io", "rpc.method": operation}
    if container_id is not None:
        attributes["flow.container_id"] = container_id
    fields = {"event": operation, "container_id": container_id} if container_id is not None else {"event": operation}
    with tracer.start_as_current_span(operation, context=parent, kind=SpanKind.SERVER, attributes=attributes) as span, log_fields(**fields):
        yield RequestSpan(span)
