"""Intent survives the manager itself: SIGKILL it, start it again, and everything is as declared."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiodocker

from controller import labels
from tests.integration.harness import Client, Server, record_timing, unique_name
from tests.integration.test_links import ask, ping, wait_link, write_code


async def test_sigkill_and_restart_adopts_everything_and_links_come_back(docker: aiodocker.Docker, tmp_path: Path):
    server = Server(tmp_path)
    server.start()
    client = await Client().connect(server.url)
    try:
        running = await client.call("create_container", {"image": "flow:latest", "name": unique_name("keep-run"),
                                                          "code_path": str(write_code(tmp_path / "code", "v1"))})
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
        listing = {c["id"]: c for c in (await client.call("list_containers", {}))["containers"]}
        deadline = asyncio.get_running_loop().time() + 15
        while any(listing.get(c["container_id"], {}).get("status") in (None, "deleted")  # not observed yet
                  for c in (running, stopped, created)):
            assert asyncio.get_running_loop().time() < deadline, listing
            await asyncio.sleep(0.1)
            listing = {c["id"]: c for c in (await client.call("list_containers", {}))["containers"]}
        record_timing("manager SIGKILL: process started -> every container adopted",
                      asyncio.get_running_loop().time() - restarted_at)
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
        await asyncio.sleep(1.5)
        assert not client.of("container_crashed") and not client.of("status_changed"), client.events
        for c in (running, stopped, created):
            assert (await client.call("delete_container", {"container_id": c["container_id"]}))["status"] == "deleted"
    finally:
        await client.close()
        server.stop()


async def test_a_run_stopped_before_a_manager_restart_is_no_crash_when_started_again(docker: aiodocker.Docker,
                                                                                    tmp_path: Path):
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
        await client.quiet("container_crashed", cid, 3.0, "the run the manager stopped before its restart ended "
                           "by the manager's hand (exit 143), not by a crash")
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
