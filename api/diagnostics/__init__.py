"""The process's own health for `get_metrics`: event-loop lag, garbage-collector pauses, CPU and memory.

flow_manager only builds and starts the monitors; api.metrics reads them. figures.py reads the figures the
controller keeps (queue, links, containers by state) for get_metrics and the metrics' gauges alike.
"""

from api.diagnostics.gc_monitor import GcMonitor
from api.diagnostics.loop_monitor import LoopMonitor, percentile_ms
from api.diagnostics.process import process_figures, rss_bytes

__all__ = ["GcMonitor", "LoopMonitor", "percentile_ms", "process_figures", "rss_bytes"]
