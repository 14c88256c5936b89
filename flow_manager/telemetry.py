"""OpenTelemetry tracing: which exporter, and the instrumentation that only runs when one is chosen.

`none` (the default) installs nothing: the API's no-op tracer answers every span, no SDK code runs and
aiohttp is not instrumented. `console` prints each span (JSON) within a fifth of a second of its end;
`otlp` (HTTP/protobuf) and `otlp-grpc` send batches to a collector configured by the standard
`OTEL_EXPORTER_OTLP_*` variables (endpoint, headers, timeout; `OTEL_BSP_*` for the batching) and name the
service `OTEL_SERVICE_NAME` (default flow-manager). The span tree is described in docs/tracing.md.
"""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from controller import tracing
from controller.adapters.docker import tracing as docker_tracing
from flow_manager import __version__

EXPORTERS = ("none", "console", "otlp", "otlp-grpc")
CONSOLE_DELAY_MS = 200  # console spans are for a person watching: shown soon, written off the event loop


class TelemetryConfigError(Exception):
    """A tracing setting that cannot work; the CLI prints it on one line and exits 2."""


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
    except ImportError:
        raise TelemetryConfigError("--trace-exporter otlp-grpc needs gRPC: pip install 'flow-manager[otlp-grpc]'") from None
    return GrpcSpanExporter()


def _resource() -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES when set; otherwise the service is flow-manager."""
    detected = Resource.create({SERVICE_VERSION: __version__})
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: "flow-manager"}))
    return detected


SHUTDOWN_FLUSH_MS = 3000  # the manager's stop waits this long at most for the last export


async def flush() -> None:
    """Send the spans still batched, off the event loop. Called by the server's shutdown: uvicorn ends the
    process with the signal it caught once it has shut down, so neither atexit nor code after
    `uvicorn.run` would run."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        await asyncio.to_thread(provider.force_flush, SHUTDOWN_FLUSH_MS)


def check(exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise TelemetryConfigError(f"unknown --trace-exporter {exporter!r}: one of {', '.join(EXPORTERS)}")


def configure(exporter: str) -> TracerProvider | None:
    """Install the tracer provider for `exporter` (before the Docker client exists: its HTTP session is
    instrumented when it is created). Returns None when tracing is off."""
    check(exporter)
    if exporter == "none":
        return None
    span_exporter = _exporter(exporter)
    provider = TracerProvider(resource=_resource())
    delay = CONSOLE_DELAY_MS if exporter == "console" else None  # OTLP: OTEL_BSP_SCHEDULE_DELAY, else 5 s
    provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=delay))
    trace.set_tracer_provider(provider)
    tracing.turn_on()
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    # Spans only: the manager's metrics are its own (a no-op meter keeps the instrumentation from adding any).
    AioHttpClientInstrumentor().instrument(tracer_provider=provider, meter_provider=NoOpMeterProvider(), request_hook=docker_tracing.request_hook)
    return provider
