"""The catalogue of the manager's metrics: every OpenTelemetry instrument, defined once.

docs/observability.md lists them (name, type, unit, labels, cardinality). Only the OpenTelemetry metrics
API is used here: until flow_manager sets a MeterProvider (`--metrics`, the default), each instrument is
the API's no-op proxy and a recording costs one method call. Names follow OpenTelemetry's conventions
(dotted, the unit apart); the Prometheus exporter turns `flow_manager.reconcile.duration` (unit `s`)
into `flow_manager_reconcile_duration_seconds` and a counter `flow_manager.reconciles` into
`flow_manager_reconciles_total`. controller-runtime's names are the anchors (`controller_runtime_reconcile_total`
→ `flow_manager.reconciles`, `workqueue_depth` → `flow_manager.workqueue.depth`, ...).

Two kinds of instrument:
- synchronous ones (counters, histograms), recorded where the thing happens;
- observed ones, read at collection time from the one figure the process already keeps (the queue's
  length, the links, the store's records, the Docker engine's state, the Socket.IO clients). The wiring
  names each figure's source with `observe()`; `get_metrics` reads the same figures, so nothing is
  counted twice.

No attribute carries an unbounded value (no container id or name, no client id): every attribute below
takes one of a fixed, small set of values.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

meter = metrics.get_meter("flow_manager")

Reading = Iterable[tuple[float, Mapping[str, str]]]  # (value, attributes) pairs of an observed instrument
_sources: dict[str, Callable[[], Reading]] = {}

# Seconds: from a fast queue hand-over (well under a millisecond) to a Docker call that waits out a stop timeout.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def observe(name: str, source: Callable[[], Reading]) -> None:
    """Name the figure an observed instrument reports (the last wiring wins: one manager per process)."""
    _sources[name] = source


def _read(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        source = _sources.get(name)
        return [Observation(value, dict(attributes)) for value, attributes in source()] if source is not None else []

    return callback


def _histogram(name: str, description: str) -> metrics.Histogram:
    return meter.create_histogram(name, unit="s", description=description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS)


def _gauge(name: str, unit: str, description: str) -> str:
    meter.create_observable_gauge(name, [_read(name)], unit=unit, description=description)
    return name


def _observed_counter(name: str, unit: str, description: str) -> str:
    meter.create_observable_counter(name, [_read(name)], unit=unit, description=description)
    return name


# -- the reconcile loop (controller/loop.py) and its work queue (controller/queue.py) -------------------------
RECONCILES = meter.create_counter(
    "flow_manager.reconciles", unit="{reconcile}", description="Reconcile passes by result (success, requeue_after, error)"
)
RECONCILE_DURATION = _histogram("flow_manager.reconcile.duration", "Time one reconcile pass took, by result")
WORKQUEUE_DEPTH = _gauge("flow_manager.workqueue.depth", "{key}", "Keys waiting for a worker")
WORKQUEUE_ADDS = meter.create_counter(
    "flow_manager.workqueue.adds", unit="{add}", description="Keys put on the queue (collapsed wake-ups not counted)"
)
WORKQUEUE_QUEUE_DURATION = _histogram("flow_manager.workqueue.queue.duration", "Time a key waited on the queue before a worker took it")
WORKQUEUE_WORK_DURATION = _histogram("flow_manager.workqueue.work.duration", "Time a worker held a key")
WORKQUEUE_RETRIES = meter.create_counter(
    "flow_manager.workqueue.retries", unit="{retry}", description="Failed passes put back on the queue for a retry"
)
RESULT_SUCCESS, RESULT_REQUEUE, RESULT_ERROR = ({"result": r} for r in ("success", "requeue_after", "error"))

# -- managed containers ----------------------------------------------------------------------------------------
CONTAINERS = _gauge("flow_manager.containers", "{container}", "Managed containers by observed state (the state get_container_status reports)")
CONTAINERS_DESIRED = _gauge("flow_manager.containers.desired", "{container}", "Managed containers by desired state")
CRASHES = meter.create_counter("flow_manager.container.crashes", unit="{crash}", description="Container runs judged a crash (oom_killed: true/false)")
RESTARTS = meter.create_counter(
    "flow_manager.container.restarts",
    unit="{restart}",
    description="Containers started again: after their run ended by itself, or on restart_container",
)
RESTART_AFTER_EXIT, RESTART_REQUESTED = {"reason": "exited"}, {"reason": "requested"}
OOM_KILLED = {True: {"oom_killed": "true"}, False: {"oom_killed": "false"}}

# -- links and messages (controller/adapters/links) -----------------------------------------------------------
LINKS_CONNECTED = _gauge("flow_manager.links.connected", "{link}", "Container links connected")
LINK_MESSAGES = _observed_counter("flow_manager.link.messages", "{message}", "Messages to and from containers (direction)")

# -- the Docker engine (controller/adapters/docker, controller/engine.py) --------------------------------------
DOCKER_CALL_DURATION = _histogram("flow_manager.docker.call.duration", "Docker API calls by operation and outcome (retries included)")
ENGINE_AVAILABLE = _gauge("flow_manager.docker.engine.available", "", "1 while the Docker engine answers, 0 while it is unreachable")

# -- the Socket.IO API (api/) ----------------------------------------------------------------------------------
API_CLIENTS = _gauge("flow_manager.api.clients", "{client}", "Socket.IO clients connected")
API_REQUEST_DURATION = _histogram("flow_manager.api.request.duration", "Socket.IO requests by event and outcome (ok or the error_type)")

# -- the process (api/diagnostics) and the journal (store/journal.py) -------------------------------------------
EVENT_LOOP_LAG = _histogram("flow_manager.eventloop.lag", "How late the event loop ran a timer that was due (one sample per probe)")
JOURNAL_WRITE_DURATION = _histogram("flow_manager.journal.write.duration", "Journal writes (append or snapshot, fsync included) by outcome")
JOURNAL_OUTCOMES = {True: "ok", False: "error"}


def journal_written(operation: str, seconds: float, ok: bool) -> None:
    """The journal's `on_write` (store/ knows nothing of metrics): one write, append or snapshot."""
    JOURNAL_WRITE_DURATION.record(seconds, {"operation": operation, "outcome": JOURNAL_OUTCOMES[ok]})
