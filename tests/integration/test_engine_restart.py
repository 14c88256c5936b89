"""The Docker engine itself goes away: killed -9 or stopped, then started again.

A private engine (its own socket, data root and network namespace) is killed
for real. The manager must keep answering, say so once, show every container
as `unknown`, and converge once the engine answers again: desired-running
containers run, desired-stopped ones stay stopped, nothing is duplicated, no
crash is blamed on the containers.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiodocker
import pytest

from tests.integration.harness import Client, Server, expect_quiet, record_timing, transitions, unique_name
from tests.integration.private_engine import PrivateEngine
from tests.integration.test_links import ping, wait_link


@pytest.fixture(scope="module")
def engine(docker: aiodocker.Docker) -> Iterator[PrivateEngine]:
    private = PrivateEngine()
    try:
        private.start()
        private.load_image("flow:latest")
        yield private
    finally:
        private.close()


@pytest.fixture
async def manager(engine: PrivateEngine, tmp_path: Path) -> AsyncIterator[tuple[Server, Client]]:
    server = Server(tmp_path, "--engine-retry-max", "1", docker_host=engine.url)
    server.start()
    client = await Client().connect(server.url)
    try:
        yield server, client
    finally:
        await client.close()
        server.stop()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "stop"])
async def test_engine_outage_is_reported_and_everything_converges_back(manager: tuple[Server, Client], engine: PrivateEngine, how: signal.Signals):
    server, client = manager
    run = await client.call("create_container", {"image": "flow:latest", "name": unique_name("eng-run")})
    halt = await client.call("create_container", {"image": "flow:latest", "name": unique_name("eng-stop")})
    for c in (run, halt):
        await client.call("start_container", {"container_id": c["container_id"]})
    await client.call("stop_container", {"container_id": halt["container_id"]})
    await wait_link(client, run["container_id"], True)
    before = {c["container_id"]: transitions(client, c["container_id"]) for c in (run, halt)}

    killed_at = time.time()
    engine.kill(how)

    # Reported once, as the documented error event, and as the engine_status extension.
    outage = await client.wait_for("error", None, lambda e: e["details"].get("operation") == "docker_engine", timeout=15)
    assert outage["error_type"] == "docker_api_error" and outage["details"]["reason"] == "docker_unreachable"
    record_timing(f"engine {how.name}: signal sent -> outage reported", time.time() - killed_at)
    await client.wait_for("engine_status", None, lambda e: e["available"] is False)
    await client.wait_for("status_changed", run["container_id"], lambda e: e["new_state"] == "unknown")
    await client.wait_for("status_changed", halt["container_id"], lambda e: e["new_state"] == "unknown")

    # The manager keeps serving: reads answer from what it knows, writes fail fast and say why.
    started = time.monotonic()
    listing = await client.call("list_containers", {})
    assert time.monotonic() - started < 1.0
    assert {c["status"] for c in listing["containers"]} == {"unknown"}
    status = await client.call("get_container_status", {"container_id": run["container_id"]})
    assert status["state"] == "unknown" and status["health"] == "unknown"
    await client.wait_for("container_status_update", run["container_id"], lambda u: u["status"]["state"] == "unknown")
    started = time.monotonic()
    refused = await client.call("create_container", {"image": "flow:latest", "name": unique_name("eng-new")})
    assert time.monotonic() - started < 5.0
    assert refused["error_type"] == "docker_api_error" and refused["details"]["reason"] == "docker_unreachable"
    assert refused["details"]["retrying"] is True

    back_at = engine.start()
    await client.wait_for("engine_status", None, lambda e: e["available"] is True, timeout=20)
    await client.wait_for(
        "status_changed",
        run["container_id"],
        lambda e: e["old_state"] != "unknown" and e["new_state"] == "running",
        count=len([t for t in before[run["container_id"]] if t[1] == "running"]) + 1,
        timeout=30,
    )
    record_timing(f"engine {how.name}: engine answers -> running again", time.time() - back_at)
    await client.wait_for("status_changed", halt["container_id"], lambda e: e["old_state"] == "unknown", timeout=30)
    await wait_link(client, run["container_id"], True)
    await ping(client, run["container_id"])
    record_timing(f"engine {how.name}: engine answers -> link answers", time.time() - back_at)
    await expect_quiet(
        client,
        {
            "status_changed": None,
            "container_crashed": None,
            "engine_status": None,
            "error": lambda e: e["details"].get("operation") == "docker_engine",
        },
        2,
        what="converged: two status rounds later, nothing more happens",
    )

    # Exactly these transitions: the engine stopped the running one (while coming back after a kill -9;
    # before going away when stopped gracefully, which the manager sees only if it inspects the container
    # before the API closes), and the manager started it again.
    after_run = transitions(client, run["container_id"])[len(before[run["container_id"]]) :]
    through_outage = [("running", "unknown"), ("unknown", "stopped"), ("stopped", "running")]
    seen_stopping = [("running", "stopped"), ("stopped", "unknown"), ("unknown", "stopped"), ("stopped", "running")]
    assert after_run == through_outage or (how == signal.SIGTERM and after_run == seen_stopping), after_run
    after_halt = transitions(client, halt["container_id"])[len(before[halt["container_id"]]) :]
    assert after_halt == [("stopped", "unknown"), ("unknown", "stopped")], after_halt
    crash_codes = [c["exit_code"] for c in client.of("container_crashed")]
    if how == signal.SIGKILL:
        assert not crash_codes, "the engine's restart is not the containers' crash"
    elif after_run == seen_stopping:  # a graceful stop ends containers while the engine answers, as `docker stop`
        assert crash_codes == [0]
    else:  # the exit was read only after the outage: a crash only if it ended over 1 s before the API closed
        assert crash_codes in ([], [0]), crash_codes
    assert len(client.of("engine_status")) == 2
    assert len(client.of("error", None, lambda e: e["details"].get("operation") == "docker_engine")) == 1

    states = dict(line.split() for line in engine.docker("ps", "-a", "--format", "{{.Names}} {{.State}}").splitlines())
    assert states == {run["name"]: "running", halt["name"]: "exited"}, "nothing duplicated, nothing left over"
    listing = await client.call("list_containers", {})
    assert {c["name"]: c["status"] for c in listing["containers"]} == {run["name"]: "running", halt["name"]: "stopped"}

    # Subscribed to the new engine's events again: a kill is seen at once, not at the next resync (5 s).
    crashes = len(client.of("container_crashed", run["container_id"]))
    killed_at = time.time()
    engine.docker("kill", run["name"])
    await client.wait_for("container_crashed", run["container_id"], count=crashes + 1, timeout=3)
    assert time.time() - killed_at < 3
    for c in (run, halt):
        await client.call("delete_container", {"container_id": c["container_id"]})
