"""Trace context as the record and the client carry it: a W3C `traceparent` string, and the fields logs carry.

A request's span is written on the record it changes (`Record.trace_context`); every reconcile pass that
works on that generation links to it, so one trace reads "client asked → controller did → Docker answered"
although the reconcile runs later, in another task. With tracing off no span is valid and nothing is
written. `log_fields` is what a JSON log line adds from the task it is logged in (event, container id).
"""

from __future__ import annotations

import contextlib
import re
from contextvars import ContextVar
from typing import ContextManager, Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

# W3C Trace Context, version 00 (the only one defined): lowercase hex; neither id may be all zeros (parse).
TRACEPARENT_RE = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_TRACEPARENT = re.compile(TRACEPARENT_RE)

_enabled = False
_log_fields: ContextVar[Mapping[str, str] | None] = ContextVar("flow_log_fields", default=None)


def parse(traceparent: object) -> SpanContext | None:
    """The remote span a `traceparent` names, or None for anything else (W3C: an invalid one is ignored)."""
    if not isinstance(traceparent, str) or not _TRACEPARENT.fullmatch(traceparent):
        return None
    _, trace_id, span_id, flags = traceparent.split("-")
    if not int(trace_id, 16) or not int(span_id, 16):
        return None
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))


def enabled() -> bool:
    """Whether spans are recorded at all (flow_manager/telemetry.py turns it on with an exporter). Off, the
    hot paths (a request, a link send) skip even the API's no-op spans, which cost more than the work they
    would describe on a small request."""
    return _enabled


def turn_on() -> None:
    global _enabled
    _enabled = True


def span(tracer: trace.Tracer, name: str, attributes: Mapping[str, str], kind: SpanKind = SpanKind.INTERNAL) -> ContextManager[object]:
    """`tracer.start_as_current_span(...)` when tracing is on, else nothing at all."""
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes) if _enabled else contextlib.nullcontext()


def format_traceparent(context: SpanContext) -> str | None:
    """`context` as a `traceparent`, or None when it is not a real span (tracing off)."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The current span as a `traceparent` (what a request writes on the record it changes)."""
    return format_traceparent(trace.get_current_span().get_span_context())


def link_to(traceparent: str | None, relation: str) -> None:
    """Link the current span to the span `traceparent` names (the request a reconcile converges)."""
    span = trace.get_current_span()
    target = parse(traceparent)
    if target is not None and span.is_recording():
        span.add_link(target, {"flow.link": relation})


class log_fields:  # noqa: N801 (used like a function: `with log_fields(event=...)`)
    """Fields every log line of this task carries while the block runs (added to the outer ones).
    A class rather than a generator: it runs on every request and every reconcile."""

    __slots__ = ("fields", "token")

    def __init__(self, **fields: str) -> None:
        self.fields: Mapping[str, str] = fields

    def __enter__(self) -> None:
        outer = _log_fields.get()
        self.token = _log_fields.set({**outer, **self.fields} if outer else self.fields)

    def __exit__(self, *exc: object) -> None:
        _log_fields.reset(self.token)


def current_log_fields() -> Mapping[str, str]:
    return _log_fields.get() or {}
