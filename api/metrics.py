"""`get_metrics`: the manager's own performance figures, for operators and the benchmark.

An extension event (not in the API reference). It answers `metrics` (event
and acknowledgement) with the event loop's lag (api.diagnostics.loop_monitor), garbage-collector pauses,
the process's CPU time and memory, the timing of the last status rounds and
a few counters. `{"reset": true}` starts a new lag window, so a caller can
ask "what was the worst stall during the phase I just ran".
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable

from api.diagnostics import GcMonitor, LoopMonitor, percentile_ms, process_figures
from api.schemas import GetMetrics
from controller import metrics


class RequestTimings:
    """How long each request's handler took, from the moment it ran to its answer being queued, by operation.

    Set beside a client's round trip, it tells the manager's own work apart from time spent before the
    handler ran (the socket, the event loop's queue, waiting for a CPU). The one place a request's time is
    recorded: the recent samples for get_metrics' percentiles, and the `flow_manager.api.request.duration`
    histogram (by event and outcome) for /metrics.
    """

    def __init__(self, keep: int = 4096) -> None:
        self.keep = keep
        self._samples: dict[str, collections.deque[float]] = {}
        self._attributes: dict[tuple[str, str], dict[str, str]] = {}  # bounded: registered events x outcomes

    def record(self, operation: str, seconds: float, outcome: str = "ok") -> None:
        """`operation`: a registered request event; `outcome`: ok, cancelled or an error_type."""
        attributes = self._attributes.get((operation, outcome))
        if attributes is None:
            attributes = self._attributes[(operation, outcome)] = {"event": operation, "outcome": outcome}
        metrics.API_REQUEST_DURATION.record(seconds, attributes)
        samples = self._samples.get(operation)
        if samples is None:
            samples = self._samples[operation] = collections.deque(maxlen=self.keep)
        samples.append(seconds)

    def snapshot(self, reset: bool = False) -> dict[str, dict[str, float]]:
        result = {}
        for operation, samples in self._samples.items():
            ordered = sorted(samples)
            if not ordered:
                continue
            result[operation] = {
                "n": len(ordered),
                "p50_ms": percentile_ms(ordered, 50),
                "p99_ms": percentile_ms(ordered, 99),
                "max_ms": round(ordered[-1] * 1000, 3),
            }
        if reset:
            self._samples.clear()
        return result


class Metrics:
    def __init__(
        self,
        monitor: LoopMonitor,
        gc_monitor: GcMonitor,
        counters: Callable[[], dict[str, Any]],
        rounds: Callable[[], list[dict[str, Any]]],
        requests: RequestTimings | None = None,
    ) -> None:
        self.monitor, self.gc_monitor, self.counters, self.rounds = monitor, gc_monitor, counters, rounds
        self.requests = requests or RequestTimings()
        self.started = time.time()

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        return {
            "timestamp": time.time(),
            "loop": self.monitor.snapshot(reset),
            "gc": self.gc_monitor.snapshot(reset),
            "process": process_figures(self.started),
            "requests": self.requests.snapshot(reset),
            "status_rounds": self.rounds(),
            **self.counters(),
        }

    async def get_metrics(self, request: GetMetrics) -> dict[str, Any]:
        """The `get_metrics` request, answered through the handlers' shared path (validation, rate limit)."""
        return self.snapshot(reset=request.reset)
