"""Metrics, probes and the plain HTTP routes, each on its own (integration: test_metrics.py, test_probes.py).

The instruments are read back through the real exporter (flow_manager/observability.py renders the
Prometheus text) and compared before and after, since the process's one MeterProvider is shared by every
test that runs after the first enable_metrics().
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.diagnostics import LoopMonitor
from api.health import Liveness, Readiness
from api.http_routes import HttpRoutes
from api.metrics import RequestTimings
from controller.engine import EngineState
from controller.loop import BACKOFF, ErrorBackoff, Loop, Result, Retry
from controller.queue import WorkQueue
from flow_manager.healthcheck import default_url
from flow_manager.observability import enable_metrics
from store.durability import JournalHealth


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, content_type, body = enable_metrics().render()
    assert status == 200 and content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(name: str, **labels: str) -> float:
    return samples().get((name, frozenset(labels.items())), 0.0)


class Flaky:
    """Fails a key's first pass, succeeds on the second, asks for a requeue on the third."""

    def __init__(self) -> None:
        self.passes: dict[str, int] = {}
        self.done = asyncio.Event()

    async def reconcile(self, key: str) -> Result:
        self.passes[key] = self.passes.get(key, 0) + 1
        if self.passes[key] == 1:
            raise RuntimeError("first pass fails")
        if self.passes[key] == 2:
            return Result(requeue_after=0.01)
        self.done.set()
        return Result()

    def failed(self, key: str, error: Exception) -> Retry:
        return BACKOFF

    def succeeded(self, key: str) -> None:
        pass


async def test_the_loop_counts_reconciles_by_result_retries_and_queue_times():
    enable_metrics()
    before = samples()
    queue = WorkQueue()
    loop = Loop(queue, Flaky(), backoff=ErrorBackoff(initial=0.01), workers=2)
    loop.start()
    try:
        queue.add("k")
        await asyncio.wait_for(loop.reconciler.done.wait(), 5)  # type: ignore[attr-defined]
    finally:
        await loop.stop()
    after = samples()

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("flow_manager_reconciles_total", result="error") == 1
    assert grew("flow_manager_reconciles_total", result="requeue_after") == 1
    assert grew("flow_manager_reconciles_total", result="success") == 1
    assert grew("flow_manager_reconcile_duration_seconds_count", result="error") == 1
    assert grew("flow_manager_workqueue_retries_total") == 1
    assert grew("flow_manager_workqueue_adds_total") == 3  # the first add, the retry, the requeue
    assert grew("flow_manager_workqueue_queue_duration_seconds_count") == 3
    assert grew("flow_manager_workqueue_work_duration_seconds_count") == 3


def test_request_timings_feed_the_histogram_by_event_and_outcome():
    enable_metrics()
    before = value("flow_manager_api_request_duration_seconds_count", event="start_container", outcome="container_not_found")
    timings = RequestTimings()
    timings.record("start_container", 0.002, "container_not_found")
    after = value("flow_manager_api_request_duration_seconds_count", event="start_container", outcome="container_not_found")
    assert after - before == 1
    assert timings.snapshot()["start_container"]["n"] == 1  # get_metrics reads the same recording


def monitor_of(since: float | None, lag: float = 0.0) -> LoopMonitor:
    """A lag monitor whose last tick was `since` seconds ago (None: no monitor, interval 0)."""
    if since is None:
        return LoopMonitor(interval=0)
    monitor = LoopMonitor(interval=0.02)
    monitor.last_tick, monitor.last_lag = time.monotonic() - since, lag
    return monitor


@pytest.mark.parametrize(
    "since, lag, stopped, status, reason",
    [
        (0.01, 0.0, [], 200, "ok"),
        (None, 0.0, [], 200, "ok"),  # no lag monitor: answering is the proof of life
        (9.0, 0.0, [], 503, "event loop stalled: no lag probe for 9."),
        (0.01, 7.5, [], 503, "event loop stalled for 7.5 s (bound 5 s)"),
        (0.01, 0.0, ["resync"], 503, "ok"),
    ],
)
def test_liveness(since: float | None, lag: float, stopped: list[str], status: int, reason: str):
    code, content_type, body = Liveness(monitor_of(since, lag), stall_bound=5.0, stopped=lambda: stopped).respond()
    answer = json.loads(body)
    assert (code, content_type) == (status, "application/json")
    assert answer["status"] == ("alive" if status == 200 else "not alive")
    assert answer["checks"]["event_loop"].startswith(reason)
    assert answer["checks"]["controller"] == ("ok" if not stopped else "tasks ended: resync")


def test_readiness_names_each_failing_check():
    engine, journal = EngineState("unix:///secret/path.sock"), JournalHealth("/state")
    relisted, listening = [False], [True]
    readiness = Readiness(engine=engine, relisted=lambda: relisted[0], listening=lambda: listening[0], journal=journal)
    code, _, body = readiness.respond()
    assert code == 503 and json.loads(body)["checks"]["relist"] == "Docker's containers not listed yet"
    relisted[0] = True
    assert readiness.respond()[0] == 200
    engine.available = False
    journal.failed(OSError(28, "No space left on device"))
    listening[0] = False
    code, _, body = readiness.respond()
    assert code == 503
    assert json.loads(body) == {
        "status": "not ready",
        "checks": {
            "journal": "state directory not writable (state_not_writable)",
            "listening": "not serving (starting or shutting down)",
            "docker_engine": "Docker engine unreachable",
            "relist": "ok",
        },
    }
    assert b"secret" not in body and b"/state" not in body


async def call(app: HttpRoutes, method: str, path: str, kind: str = "http") -> tuple[list[dict[str, Any]], list[str]]:
    sent: list[dict[str, Any]] = []
    passed: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        passed.append(scope["path"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app.app = inner
    await app({"type": kind, "method": method, "path": path, "headers": []}, receive, send)
    return sent, passed


async def test_http_routes_answer_their_paths_and_pass_the_rest_on():
    routes = HttpRoutes(app=None)  # type: ignore[arg-type]
    routes.serve("/healthz", lambda: (200, "application/json", b'{"status":"alive"}'))
    sent, passed = await call(routes, "GET", "/healthz")
    assert sent[0]["status"] == 200 and sent[1]["body"] == b'{"status":"alive"}' and not passed
    assert (b"content-length", b"18") in sent[0]["headers"]
    sent, _ = await call(routes, "HEAD", "/healthz")
    assert sent[0]["status"] == 200 and sent[1]["body"] == b""
    sent, passed = await call(routes, "POST", "/healthz")
    assert sent[0]["status"] == 405 and (b"allow", b"GET, HEAD") in sent[0]["headers"] and not passed
    for method, path, kind in (
        ("GET", "/socket.io/", "http"),
        ("POST", "/socket.io/", "http"),
        ("GET", "/healthz", "websocket"),
        ("GET", "/metrics", "http"),
    ):
        sent, passed = await call(routes, method, path, kind)
        assert passed == [path] and not sent, (method, path, kind)


def test_healthcheck_finds_the_manager_from_its_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FLOW_MANAGER_HOST", raising=False)
    monkeypatch.delenv("FLOW_MANAGER_PORT", raising=False)
    assert default_url() == "http://127.0.0.1:8000/healthz"
    monkeypatch.setenv("FLOW_MANAGER_HOST", "0.0.0.0")
    monkeypatch.setenv("FLOW_MANAGER_PORT", "9100")
    assert default_url(ready=True) == "http://127.0.0.1:9100/readyz"
    monkeypatch.setenv("FLOW_MANAGER_HOST", "::1")
    assert default_url() == "http://[::1]:9100/healthz"
