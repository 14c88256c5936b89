"""Metrics on: the OpenTelemetry MeterProvider, read by Prometheus at GET /metrics.

controller/metrics.py defines every instrument through the OpenTelemetry API alone; they stay no-ops until
`enable_metrics()` sets the process's MeterProvider (`--metrics`, the default). Its one reader is the
OpenTelemetry Prometheus exporter, on a registry of its own (not prometheus_client's global one), rendered
on demand by the /metrics route: a scrape runs the observed instruments' callbacks on the event loop,
where the figures they read live. `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the service
(the `target_info` series); the default name is flow-manager. `OTEL_METRICS_EXPORTER=otlp` (OpenTelemetry's
own variable) adds a second reader that pushes the same instruments over OTLP/HTTP to
`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` every `OTEL_METRIC_EXPORT_INTERVAL` ms
(60 s unless set), for a collector that is not Prometheus.
"""

from __future__ import annotations

import os

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Exposition:
    """The MeterProvider and the Prometheus text it renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # scope labels off: one scope (flow_manager), and shorter series
        self.reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        readers: list[MetricReader] = [self.reader]
        if "otlp" in pushed_exporters():
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))  # interval: OTEL_METRIC_EXPORT_INTERVAL
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "flow-manager"})
        self.provider = MeterProvider(metric_readers=readers, resource=resource)
        metrics.set_meter_provider(self.provider)

    def render(self) -> tuple[int, str, bytes]:
        """The route behind GET /metrics (api/http_routes.py)."""
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)


def pushed_exporters() -> set[str]:
    """OTEL_METRICS_EXPORTER's names (comma-separated, as OpenTelemetry reads them); `prometheus` is always on."""
    return {name.strip().lower() for name in os.environ.get("OTEL_METRICS_EXPORTER", "").split(",") if name.strip()}


_exposition: Exposition | None = None


def enable_metrics() -> Exposition:
    """The process's one Exposition (OpenTelemetry's MeterProvider is set once per process)."""
    global _exposition
    if _exposition is None:
        _exposition = Exposition()
    return _exposition
