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
        async def listing_by_id() -> dict[str, dict]:
            return {c["id"]: c for c in (await client.call("list_containers", {}))["containers"]}
        listing = await wait_until(listing_by_id, 15, interval=0.1, what="every container adopted (listed, not pending)",
                                   until=lambda listed: all(listed.get(c["container_id"], {}).get("status")
                                                            not in (None, "pending") for c in (running, stopped, created)))
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
        assert not client.of("container_crashed") and not client.of("status_changed"), client.events
        await expect_quiet(client, {"container_crashed": None, "status_changed": None}, 1.5,
                           what="adopted as they were: no transition, no crash")
        for c in (running, stopped, created):
            assert (await client.call("delete_container", {"container_id": c["container_id"]}))["status"] == "deleted"
    finally:
        await client.close()
        server.stop()
