"""A container that dies on its own is a crash: reported once, restarted with back-off."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiodocker

from tests.integration.harness import Client, Server, expect_quiet, record_timing, unique_name, wait_until

BANNER = "flow runtime started"
SLACK = 5.0  # seconds beyond a back-off for Docker to start the container again and it to crash


async def test_kill_from_outside_is_one_crash_and_the_container_runs_again(client: Client, docker: aiodocker.Docker):
    name = unique_name("kill")
    created = await client.call("create_container", {"image": "flow:latest", "name": name})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    container = docker.containers.container(created["docker_id"])
    await wait_until(
        lambda: container.log(stdout=True, stderr=True),
        15,
        until=lambda lines: BANNER in "".join(lines),
        what="the runtime's banner in the container's logs",
    )
    killed_at, killed_wall = asyncio.get_running_loop().time(), time.time()
    await container.kill(signal="SIGKILL")

    crash = await client.wait_for("container_crashed", cid)
    assert crash["exit_code"] == 137 and killed_wall <= crash["timestamp"] <= time.time(), (killed_wall, crash)
    assert crash["crash_details"]["error"] == "Killed by signal 9"
    assert BANNER in crash["crash_details"]["logs"]
    await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "container_crash")
    await client.wait_for("status_changed", cid, lambda e: (e["old_state"], e["new_state"]) == ("stopped", "running"))
    record_timing("docker kill behind the back -> running again", asyncio.get_running_loop().time() - killed_at)
    info = await docker.containers.container(created["docker_id"]).show()
    assert info["State"]["Running"], "restarted in place: same Docker container"
    assert len(client.of("container_crashed", cid)) == 1
    await expect_quiet(client, {"container_crashed": None, "status_changed": None}, 2, container_id=cid, what="one kill is one crash and one restart")
    transitions = [(e["old_state"], e["new_state"]) for e in client.of("status_changed", cid)]
    assert transitions == [("created", "running"), ("running", "stopped"), ("stopped", "running")]
    await client.call("delete_container", {"container_id": cid})


async def test_a_crash_loop_backs_off_exponentially(client: Client):
    name = unique_name("loop")
    cid = (
        await client.call(
            "create_container",
            {"image": "flow:latest", "name": name, "command": ["python3", "-c", "import sys; print('boom', flush=True); sys.exit(3)"]},
        )
    )["container_id"]
    await client.call("start_container", {"container_id": cid})
    third = await client.wait_for("container_crashed", cid, count=3, timeout=30)
    crashes = client.of("container_crashed", cid)[:3]
    assert [c["exit_code"] for c in crashes] == [3, 3, 3]
    assert crashes[0]["crash_details"]["error"] == "Exited with code 3" and "boom" in crashes[0]["crash_details"]["logs"]
    # server runs with --restart-backoff-initial 0.5: immediate, 0.5 s, 1 s
    assert [c["crash_details"]["restart_in"] for c in crashes] == [0.0, 0.5, 1.0]
    # Each next run starts no earlier than its back-off after the crash (both stamps are the manager's
    # clock), and not much later: SLACK covers Docker starting the container and Python exiting again.
    for before, after in zip(crashes, crashes[1:]):
        waited, backoff = after["timestamp"] - before["timestamp"], before["crash_details"]["restart_in"]
        assert backoff - 0.001 <= waited <= backoff + SLACK, (backoff, waited)
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["restart_count"] >= 3, status  # the loop goes on meanwhile: at least the crashes seen
    await client.call("stop_container", {"container_id": cid})
    await expect_quiet(
        client,
        {"container_crashed": None, "status_changed": lambda e: e["new_state"] == "running"},
        2.5,
        container_id=cid,
        what="stopped means no more restarts",
    )
    final = await client.call("get_container_status", {"container_id": cid})
    assert final["restart_count"] == len(client.of("container_crashed", cid)), "every crash counted is reported"
    assert third["container_id"] == cid
    await client.call("delete_container", {"container_id": cid})


async def test_restart_after_removal_behind_the_managers_back(client: Client, docker: aiodocker.Docker):
    name = unique_name("gone")
    created = await client.call("create_container", {"image": "flow:latest", "name": name})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    removed_at = asyncio.get_running_loop().time()
    await docker.containers.container(created["docker_id"]).delete(force=True)
    await client.wait_for("status_changed", cid, lambda e: e["old_state"] == "deleted" and e["new_state"] == "created", timeout=15)
    await client.wait_for("status_changed", cid, lambda e: e["new_state"] == "running", count=2, timeout=15)
    record_timing("docker rm -f behind the back -> recreated and running", asyncio.get_running_loop().time() - removed_at)
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["state"] == "running" and status["docker_id"] != created["docker_id"]
    assert status["container_id"] == cid, "the managed id is stable across recreation"
    await client.call("delete_container", {"container_id": cid})


async def test_out_of_memory_is_reported_as_such(client: Client):
    name = unique_name("oom")
    hog = "x = []\nwhile True: x.append(bytearray(8 << 20))"
    cid = (
        await client.call("create_container", {"image": "flow:latest", "name": name, "memory_limit": 48 << 20, "command": ["python3", "-c", hog]})
    )["container_id"]
    await client.call("start_container", {"container_id": cid})
    crash = await client.wait_for("container_crashed", cid, timeout=30)
    assert crash["crash_details"]["error"] == "Out of memory" and crash["crash_details"]["oom_killed"] is True
    assert crash["exit_code"] == 137
    await client.call("stop_container", {"container_id": cid})
    await client.call("delete_container", {"container_id": cid})


async def test_a_container_removed_during_a_back_off_is_recreated_at_once_and_started_at_its_deadline(docker: aiodocker.Docker, tmp_path: Path):
    """The back-off belongs to the managed container: `docker rm -f` during it does not skip it (kubelet)."""
    server = Server(tmp_path, "--restart-backoff-initial", "4", "--restart-backoff-max", "4")
    server.start()
    client = await Client().connect(server.url)
    try:
        crashing = ["python3", "-c", "import sys; sys.exit(3)"]
        cid = (await client.call("create_container", {"image": "flow:latest", "name": unique_name("rmbo"), "command": crashing}))["container_id"]
        await client.call("start_container", {"container_id": cid})
        second = await client.wait_for("container_crashed", cid, count=2, timeout=30)
        assert second["crash_details"]["restart_in"] == 4.0
        deadline = second["timestamp"] + 4.0
        waiting = await client.call("get_container_status", {"container_id": cid})
        assert waiting["waiting_reason"] == "CrashLoopBackOff", waiting
        await docker.containers.container(waiting["docker_id"]).delete(force=True)
        created = await client.wait_for("status_changed", cid, lambda e: (e["old_state"], e["new_state"]) == ("deleted", "created"), timeout=15)
        assert created["timestamp"] < deadline, "recreated at once, not at the deadline"
        status = await client.call("get_container_status", {"container_id": cid})
        assert (status["state"], status["waiting_reason"]) == ("created", "CrashLoopBackOff"), status
        assert status["docker_id"] != waiting["docker_id"]
        started = await client.wait_for(
            "status_changed",
            cid,
            # started: seen running, or (it exits at once) already stopped again when the controller looked
            lambda e: e["old_state"] == "created" and e["new_state"] in ("running", "stopped") and e["timestamp"] >= created["timestamp"],
            timeout=15,
        )
        assert started["timestamp"] >= deadline - 0.01, (started["timestamp"], deadline)
        await client.call("delete_container", {"container_id": cid})
    finally:
        await client.close()
        server.stop()
