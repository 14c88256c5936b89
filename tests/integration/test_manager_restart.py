"""Intent survives the manager itself: SIGKILL it, start it again, and everything is as declared."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiodocker

from controller import labels
from tests.integration.harness import Client, Server, expect_quiet, record_timing, unique_name, wait_until
from tests.integration.test_links import ask, ping, wait_link, write_code


async def test_sigkill_and_restart_adopts_everything_and_links_come_back(docker: aiodocker.Docker, tmp_path: Path):
    server = Server(tmp_path)
    server.start()
    client = await Client().connect(server.url)
    try:
        running = await client.call(
            "create_container", {"image": "flow:latest", "name": unique_name("keep-run"), "code_path": str(write_code(tmp_path / "code", "v1"))}
        )
        stopped = await client.call("create_container", {"image": "flow:latest", "name": unique_name("keep-stop")})
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("keep-new")})
        for c in (running, stopped):
            await client.call("start_container", {"container_id": c["container_id"]})
        await client.call("stop_container", {"container_id": stopped["container_id"]})
        await wait_link(client, running["container_id"], True)
        await ping(client, running["container_id"])
    finally:
        await client.close()

    server.stop(signal.SIGKILL)
    assert server.proc is not None and server.proc.returncode == -signal.SIGKILL
    restarted_at = asyncio.get_running_loop().time()
    server.start()
    client = await Client().connect(server.url)
    try:

        async def listing_by_id() -> dict[str, dict]:
            return {c["id"]: c for c in (await client.call("list_containers", {}))["containers"]}

        listing = await wait_until(
            listing_by_id,
            15,
            interval=0.1,
            what="every container adopted (listed with a Docker state)",
            until=lambda listed: all(listed.get(c["container_id"], {}).get("status") not in (None, "deleted") for c in (running, stopped, created)),
        )
        record_timing("manager SIGKILL: process started -> every container adopted", asyncio.get_running_loop().time() - restarted_at)
        assert listing[running["container_id"]]["status"] == "running"
        assert listing[stopped["container_id"]]["status"] == "stopped"
        assert listing[created["container_id"]]["status"] == "created"
        for c in (running, stopped, created):
            assert listing[c["container_id"]]["docker_id"] == c["docker_id"], "adopted, never recreated"
        ours = await docker.containers.list(all=True, filters=labels.managed_filter(server.instance))
        assert len(ours) == 3, "no duplicates"

        await wait_link(client, running["container_id"], True)  # the runtime dialled the new socket by itself
        record_timing("manager SIGKILL: process started -> link answers", asyncio.get_running_loop().time() - restarted_at)
        await ping(client, running["container_id"])
        assert (await ask(client, running["container_id"], "read"))["data"]["version"] == "v1"
        assert not client.of("container_crashed") and not client.of("status_changed"), client.events
        await expect_quiet(client, {"container_crashed": None, "status_changed": None}, 1.5, what="adopted as they were: no transition, no crash")
        for c in (running, stopped, created):
            assert (await client.call("delete_container", {"container_id": c["container_id"]}))["status"] == "deleted"
    finally:
        await client.close()
        server.stop()


async def test_a_run_stopped_before_a_manager_restart_is_no_crash_when_started_again(docker: aiodocker.Docker, tmp_path: Path):
    """Which runs the manager ended itself survives the manager: a stop, a restart of the manager, a start."""
    server = Server(tmp_path)
    server.start()
    client = await Client().connect(server.url)
    try:
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("stopped")})
        cid = created["container_id"]
        await client.call("start_container", {"container_id": cid})
        assert (await client.call("stop_container", {"container_id": cid}))["status"] == "stopped"
    finally:
        await client.close()

    server.stop()
    server.start()
    client = await Client().connect(server.url)
    try:
        assert (await client.call("start_container", {"container_id": cid}))["status"] == "running"
        assert not client.of("container_crashed", cid), client.events
        await expect_quiet(
            client,
            "container_crashed",
            3.0,
            container_id=cid,
            what="the run the manager stopped before its restart ended by the manager's hand (exit 143), not by a crash",
        )
        assert not client.of("activity_log", cid, lambda a: a["activity_type"] == "container_crash"), client.events

        # A real crash now is the first one: restarted at once, no back-off earned by the stop.
        await docker.containers.container(created["docker_id"]).kill(signal="SIGKILL")
        crash = await client.wait_for("container_crashed", cid)
        assert crash["crash_details"]["error"] == "Killed by signal 9" and crash["crash_details"]["restart_in"] == 0
        await client.wait_for("status_changed", cid, lambda e: (e["old_state"], e["new_state"]) == ("stopped", "running"))
        assert len(client.of("container_crashed", cid)) == 1
        await client.call("delete_container", {"container_id": cid})
    finally:
        await client.close()
        server.stop()
