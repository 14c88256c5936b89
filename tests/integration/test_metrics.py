"""A real Prometheus server scrapes the manager's /metrics and answers queries about it.

The manager runs with an instance of its own, so the containers it counts are this test's only. The
series are asserted through Prometheus's query API, as an operator's dashboard would read them.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiodocker
import aiohttp
import pytest
import socketio

from tests.integration.harness import Client, Server, unique_name, wait_until
from tests.integration.prometheus import Prometheus

CRASH = ["python3", "-c", "import sys, time; print('up', flush=True); time.sleep(1.5); sys.exit(3)"]


@pytest.fixture(scope="module")
def manager(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("metrics"), "--token", "metrics-test-token")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(manager: Server) -> Iterator[Prometheus]:
    server = Prometheus(f"127.0.0.1:{manager.port}")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def client(manager: Server) -> AsyncIterator[Client]:
    connected = await Client().connect(manager.url, auth={"token": "metrics-test-token"})
    yield connected
    await connected.close()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return response.status, await response.text()


async def test_prometheus_scrapes_the_manager_and_sees_a_container_run_and_crash(prometheus: Prometheus, client: Client):
    targets = await wait_until(prometheus.targets, 20, until=lambda t: bool(t) and t[0]["health"] == "up", what="the manager's target up")
    assert targets[0]["scrapeUrl"].endswith("/metrics")

    steady = (await client.call("create_container", {"image": "flow:latest", "name": unique_name("prom-run")}))["container_id"]
    await client.call("start_container", {"container_id": steady})
    assert await wait_until(
        lambda: prometheus.value('flow_manager_containers{state="running"}'), 20, until=lambda v: v == 1, what="one running container"
    )
    assert await prometheus.value('flow_manager_containers_desired{desired_state="running"}') == 1
    assert await prometheus.value('flow_manager_containers{state="stopped"}') == 0  # every state is a series, 0 included
    assert await prometheus.value("flow_manager_docker_engine_available") == 1
    assert await prometheus.value("flow_manager_api_clients") == 1

    crashing = await client.call("create_container", {"image": "flow:latest", "name": unique_name("prom-crash"), "command": CRASH})
    await client.call("start_container", {"container_id": crashing["container_id"]})
    await client.wait_for("container_crashed", crashing["container_id"], timeout=30)
    crashes = await wait_until(
        lambda: prometheus.value('sum(flow_manager_container_crashes_total{oom_killed="false"})'),
        20,
        until=lambda v: v is not None and v >= 1,
        what="a crash counted",
    )
    await client.wait_for("container_crashed", crashing["container_id"], count=2, timeout=30)
    await wait_until(
        lambda: prometheus.value("sum(flow_manager_container_crashes_total)"), 20, until=lambda v: v is not None and v > crashes, what="crashes grow"
    )
    assert await wait_until(
        lambda: prometheus.value('sum(flow_manager_container_restarts_total{reason="exited"})'),
        20,
        until=lambda v: v is not None and v >= 1,
        what="the restart after the first crash",
    )

    # The controller's own series, by result; the documented queries answer.
    assert await prometheus.value('sum(flow_manager_reconciles_total{result="success"})') > 0
    assert await prometheus.value("sum(flow_manager_reconcile_duration_seconds_count)") > 0
    assert await prometheus.value("sum(flow_manager_workqueue_adds_total)") > 0
    assert await prometheus.value("sum(flow_manager_workqueue_queue_duration_seconds_count)") > 0
    assert await prometheus.value('sum(flow_manager_docker_call_duration_seconds_count{operation="create_container",outcome="ok"})') >= 2
    assert await prometheus.value('sum(flow_manager_api_request_duration_seconds_count{event="create_container",outcome="ok"})') >= 2
    assert await prometheus.value("sum(flow_manager_eventloop_lag_seconds_count)") > 0
    assert await prometheus.value("sum(flow_manager_journal_write_duration_seconds_count)") > 0
    by_state = await prometheus.query("sum by (state) (flow_manager_containers)")
    assert {item["metric"]["state"] for item in by_state} >= {"running", "stopped", "unknown"}
    error_rate = await prometheus.query('sum(rate(flow_manager_reconciles_total{result="error"}[1m])) / sum(rate(flow_manager_reconciles_total[1m]))')
    assert error_rate is not None  # a valid expression over our names (the value depends on timing)

    for cid in (steady, crashing["container_id"]):
        await client.call("delete_container", {"container_id": cid})


async def test_no_label_names_a_container_and_the_probes_need_no_token(manager: Server, client: Client):
    name = unique_name("prom-names")
    created = await client.call("create_container", {"image": "flow:latest", "name": name})
    await client.call("start_container", {"container_id": created["container_id"]})
    status, text = await get(f"{manager.url}/metrics")  # no token: the endpoint carries counts only
    assert status == 200 and "flow_manager_containers" in text
    assert created["container_id"] not in text and name not in text and created["docker_id"] not in text
    for path in ("/healthz", "/readyz"):
        status, body = await get(f"{manager.url}{path}")
        assert status == 200, (path, body)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{manager.url}/healthz") as response:
            assert response.status == 405
    # The Socket.IO API itself still wants the token.
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Client().connect(manager.url)
    await client.call("delete_container", {"container_id": created["container_id"]})


def test_metrics_can_be_turned_off(tmp_path: Path, docker: aiodocker.Docker) -> None:
    server = Server(tmp_path, "--no-metrics")
    server.start()
    try:
        check = [sys.executable, "-m", "flow_manager.cli", "healthcheck", "--timeout", "5"]
        ready = subprocess.run([*check, "--ready", "--url", f"{server.url}/readyz"], capture_output=True, text=True, timeout=30)
        assert ready.returncode == 0 and '"status":"ready"' in ready.stdout, ready
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/metrics", timeout=5)
        assert missing.value.code == 404
    finally:
        server.stop()
