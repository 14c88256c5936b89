"""The reference's lifecycle, end to end, against the real engine."""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import datetime

import aiodocker

from tests.integration.harness import Client, unique_name, wait_until

HEX12 = re.compile(r"^[0-9a-f]{12}$")
COUNTERS = ("network_rx_bytes", "network_tx_bytes", "disk_read_bytes", "disk_write_bytes")


async def docker_counters(docker: aiodocker.Docker, docker_id: str) -> dict[str, int]:
    """Docker's own cumulative counters for a container, now (one-shot: no second CPU sample awaited)."""
    stats = await docker._query_json(f"containers/{docker_id}/stats", params={"stream": "0", "one-shot": "1"})
    networks = (stats.get("networks") or {}).values()
    blkio = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    return {
        "network_rx_bytes": sum(n["rx_bytes"] for n in networks),
        "network_tx_bytes": sum(n["tx_bytes"] for n in networks),
        "disk_read_bytes": sum(e["value"] for e in blkio if e["op"].lower() == "read"),
        "disk_write_bytes": sum(e["value"] for e in blkio if e["op"].lower() == "write"),
    }


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_reference_lifecycle(client: Client, docker: aiodocker.Docker, server):
    name = unique_name("life")
    began = time.time()
    created = await client.call("create_container", {"image": "flow:latest", "name": name, "environment": {"ENV_VAR1": "value1"}, "ports": {}})
    cid = created["container_id"]
    assert HEX12.match(cid)
    assert {k: created[k] for k in ("name", "image", "status", "ports")} == {"name": name, "image": "flow:latest", "status": "created", "ports": {}}
    assert created["socket_path"] == f"{server.socket_dir}/{name}.sock"
    assert (await client.wait_for("container_created", cid)) == created
    info = await docker.containers.container(created["docker_id"]).show()
    assert info["State"]["Status"] == "created" and "ENV_VAR1=value1" in info["Config"]["Env"]

    started = await client.call("start_container", {"container_id": cid})
    assert started == {"container_id": cid, "status": "running"}
    assert (await client.wait_for("container_started", cid)) == started
    info = await docker.containers.container(created["docker_id"]).show()
    assert info["State"]["Running"] is True

    # No HEALTHCHECK in the image: health is the link's. The runtime dials its socket by itself and the
    # manager pings it every 0.5 s, so connected and healthy must both come true.
    await wait_until(
        lambda: client.call("get_container_status", {"container_id": cid}),
        15,
        until=lambda s: s["socket_connected"] is True and s["health"] == "healthy",
        what="the runtime's link connected and answering pings",
    )
    before = await docker_counters(docker, created["docker_id"])
    status = await client.call("get_container_status", {"container_id": cid})
    after = await docker_counters(docker, created["docker_id"])
    assert status["state"] == "running" and status["health"] == "healthy" and status["socket_connected"] is True, status
    assert re.match(r"^\d+:\d\d:\d\d$", status["uptime"]), status["uptime"]
    usage = status["resource_usage"]
    assert usage["memory_usage"] > 0 and usage["memory_limit"] >= usage["memory_usage"]
    assert 0 <= usage["cpu_percent"] <= 110 * (os.cpu_count() or 1), usage  # all CPUs busy, plus sampling jitter
    assert abs(usage["memory_percent"] - usage["memory_usage"] / usage["memory_limit"] * 100) <= 0.01, usage
    # Cumulative counters: read between two of Docker's own readings, they lie between them (a manager
    # that reported zeros, swapped rx and tx, or summed another container's would not).
    for key in COUNTERS:
        assert isinstance(usage[key], int) and before[key] <= usage[key] <= after[key], (key, before, usage, after)
    iso(usage["timestamp"])
    assert status["docker_id"] == created["docker_id"]

    listing = await client.call("list_containers", {})
    mine = [c for c in listing["containers"] if c["id"] == cid]
    assert listing["count"] == len(listing["containers"]) and len(mine) == 1
    assert mine[0]["name"] == name and mine[0]["status"] == "running" and mine[0]["image"] == "flow:latest"
    iso(mine[0]["created"])

    before = info["State"]["StartedAt"]
    restarted = await client.call("restart_container", {"container_id": name})  # a name works as well as an id
    assert restarted == {"container_id": cid, "status": "running"}
    after = (await docker.containers.container(created["docker_id"]).show())["State"]
    assert after["Running"] and after["StartedAt"] != before

    stopped = await client.call("stop_container", {"container_id": cid})
    assert stopped == {"container_id": cid, "status": "stopped"}
    assert (await docker.containers.container(created["docker_id"]).show())["State"]["Running"] is False

    deleted = await client.call("delete_container", {"container_id": cid})
    assert deleted == {"container_id": cid, "status": "deleted"}
    assert not await docker.containers.list(all=True, filters={"name": [name]})
    assert all(c["id"] != cid for c in (await client.call("list_containers", {}))["containers"])

    # The diffs: one status_changed per real transition, in order, and an activity for each operation.
    transitions = [(e["old_state"], e["new_state"]) for e in client.of("status_changed", cid)]
    assert transitions == [("created", "running"), ("running", "stopped"), ("stopped", "running"), ("running", "stopped"), ("stopped", "deleted")]
    stamps = [e["timestamp"] for e in client.of("status_changed", cid)]
    assert began <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= time.time(), (began, stamps)
    activities = [a["activity_type"] for a in client.of("activity_log", cid)]
    for kind in ("container_created", "container_started", "container_restarted", "container_stopped", "container_deleted", "status_change"):
        assert kind in activities, kind
    assert not client.of("container_crashed", cid), "a requested stop or restart is not a crash"


async def test_start_from_name_and_idempotent_requests(client: Client):
    name = unique_name("idem")
    cid = (await client.call("create_container", {"image": "flow:latest", "name": name}))["container_id"]
    assert (await client.call("start_container", {"container_id": name}))["status"] == "running"
    assert (await client.call("start_container", {"container_id": cid}))["status"] == "running"
    assert (await client.call("stop_container", {"container_id": cid}))["status"] == "stopped"
    assert (await client.call("stop_container", {"container_id": cid}))["status"] == "stopped"
    assert [(e["old_state"], e["new_state"]) for e in client.of("status_changed", cid)] == [("created", "running"), ("running", "stopped")]
    await client.call("delete_container", {"container_id": cid})


async def test_ports_are_published_on_loopback(client: Client, docker: aiodocker.Docker):
    from tests.integration.harness import free_port

    host_port = free_port()
    name = unique_name("port")
    created = await client.call("create_container", {"image": "flow:latest", "name": name, "ports": {"8080": host_port}})
    assert created["ports"] == {"8080": host_port}
    await client.call("start_container", {"container_id": name})
    info = await docker.containers.container(created["docker_id"]).show()
    assert info["NetworkSettings"]["Ports"]["8080/tcp"][0] == {"HostIp": "127.0.0.1", "HostPort": str(host_port)}
    await client.call("delete_container", {"container_id": name})


async def test_every_client_sees_server_events(server, client: Client):
    other = await Client().connect(server.url)
    try:
        assert (await other.wait_for("connected"))["message"]
        name = unique_name("bcast")
        cid = (await client.call("create_container", {"image": "flow:latest", "name": name}))["container_id"]
        await client.call("start_container", {"container_id": cid})
        await other.wait_for("status_changed", cid, lambda e: e["new_state"] == "running")
        await other.wait_for("activity_log", cid, lambda e: e["activity_type"] == "container_started")
        update = await other.wait_for("container_status_update", cid, timeout=10)
        assert set(update["status"]) >= {"state", "health", "socket_connected", "uptime", "resource_usage"}
        assert not other.of("container_started"), "responses go to the requester only"
        await client.call("delete_container", {"container_id": cid})
    finally:
        await other.close()


async def test_get_metrics_extension(client):
    """The manager's own figures, through the same request path as every event (validated, rate limited)."""
    await client.call("list_containers", {})
    metrics = await client.call("get_metrics", {"reset": True})
    assert {"loop", "gc", "process", "requests", "status_rounds", "docker_calls"} <= set(metrics), metrics.keys()
    assert metrics["requests"]["list_containers"]["n"] >= 1 and metrics["process"]["rss_bytes"] > 0
    await client.wait_for("metrics", None)
    after_reset = await client.call("get_metrics")  # no argument: an empty request
    assert "list_containers" not in after_reset["requests"], "reset started new handler-time windows"
    refused = await client.call("get_metrics", {"reset": "yes"})
    assert refused["error_type"] == "validation_error" and refused["details"]["field"] == "reset"


async def test_a_stop_right_after_the_start_ends_the_runtime_with_exit_code_0(client: Client, docker: aiodocker.Docker):
    """docs/runtime.md: the runtime exits 0 on SIGTERM, also one that arrives while it is still starting
    (importing asyncio takes 0.1-0.3 s in the image): installing its handler is its first statement. The
    stop is sent 80 ms after Docker started the process (the case a user reported: 143 before); only the
    Python interpreter's own start-up (~15 ms, before any runtime code) remains uncovered."""
    for attempt in range(3):
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name(f"sigterm{attempt}")})
        cid = created["container_id"]
        await client.call("start_container", {"container_id": cid})
        container = docker.containers.container(created["docker_id"])
        base, _, fraction = (await container.show())["State"]["StartedAt"].rstrip("Z").partition(".")
        started_at = datetime.fromisoformat(f"{base}.{(fraction + '000000')[:6]}+00:00").timestamp()  # Docker's: nanoseconds
        await asyncio.sleep(max(0.0, started_at + 0.08 - time.time()))
        await client.call("stop_container", {"container_id": cid})
        state = (await container.show())["State"]
        assert (state["ExitCode"], state["Status"]) == (0, "exited"), (attempt, state)
        await client.call("delete_container", {"container_id": cid})
