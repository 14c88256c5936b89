"""OpenTelemetry tracing: spans around reconciles; exported only when asked for.

With no exporter configured the API's no-op tracer is used and spans cost
next to nothing.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def configure(exporter: str) -> None:
    if exporter == "none":
        return
    if exporter != "console":
        raise ValueError(f"unknown trace exporter {exporter!r} (none or console)")
    provider = TracerProvider(resource=Resource.create({"service.name": "flow-manager"}))
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
