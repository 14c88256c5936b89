"""The span of one Socket.IO request: event, container id, outcome, error type; the client's trace continued.

A client continues its own trace by sending a W3C `traceparent`: in the request (the optional `traceparent`
field every request accepts) or once for the connection (`auth={"traceparent": ...}`); the request's wins.
The span's context is what a request writes on the record it changes (controller/tracing.py), so the
reconcile that converges the change links back to it. With tracing off the API's no-op tracer is used:
no SDK, no processing; only the log fields (event, container id) are kept for JSON logs.
"""

from __future__ import annotations

from typing import Any, ContextManager

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from controller.tracing import enabled, log_fields, parse

tracer = trace.get_tracer("flow_manager.api")


class RequestSpan:
    """The span of one request (a SERVER span named after the event; the client's context, if any, its
    parent) and its log fields. Tells the span the outcome, and the error type of a failure. With tracing
    off only the log fields are set: no span object at all (a class, not a generator: one per request)."""

    __slots__ = ("operation", "container_id", "remote", "fields", "_span", "_scope")

    def __init__(self, operation: str, container_id: str | None, traceparent: object, connection_traceparent: str | None) -> None:
        self.operation, self.container_id = operation, container_id
        self.remote = (traceparent, connection_traceparent)
        self.fields = log_fields(event=operation, container_id=container_id) if container_id is not None else log_fields(event=operation)
        self._span: trace.Span | None = None
        self._scope: ContextManager[trace.Span] | None = None

    def __enter__(self) -> "RequestSpan":
        self.fields.__enter__()
        if enabled():
            remote = parse(self.remote[0]) or parse(self.remote[1])
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote)) if remote is not None else None
            attributes = {"rpc.system": "socket.io", "rpc.method": self.operation}
            if self.container_id is not None:
                attributes["flow.container_id"] = self.container_id
            self._scope = tracer.start_as_current_span(self.operation, context=parent, kind=SpanKind.SERVER, attributes=attributes)
            self._span = self._scope.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._scope is not None:
                self._scope.__exit__(*exc)
        finally:
            self.fields.__exit__()

    def succeeded(self) -> None:
        if self._span is not None:
            self._span.set_attribute("flow.outcome", "ok")

    def failed(self, error_type: str, message: str) -> None:
        if self._span is not None:
            self._span.set_attributes({"flow.outcome": "error", "error.type": error_type})
            self._span.set_status(Status(StatusCode.ERROR, message[:200]))
