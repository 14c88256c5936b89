"""Drift behind the manager's back, and containers nobody asked for.

- `docker stop` / `docker kill` of a container that should run: converged back, reported once.
- A container whose configuration no longer matches (here: the manager restarted with another
  stop timeout, which is part of every container's configuration hash): recreated create-before-delete,
  under the same managed id and name, reported once.
- A container labelled for this manager without a record: reported, kept for the grace period, removed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import aiodocker
import pytest

from controller import labels
from tests.integration.harness import Client, Server, expect_quiet, record_timing, transitions, unique_name, wait_until
from tests.integration.test_links import ping, wait_link


async def test_docker_stop_behind_the_back_is_converged_back_and_reported_once(client: Client, docker: aiodocker.Docker):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("dstop")})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    await wait_link(client, cid, True)
    stopped_at = asyncio.get_running_loop().time()
    await docker.containers.container(created["docker_id"]).stop(t=5)

    await client.wait_for("status_changed", cid, lambda e: (e["old_state"], e["new_state"]) == ("stopped", "running"))
    record_timing("docker stop behind the back -> running again", asyncio.get_running_loop().time() - stopped_at)
    await expect_quiet(
        client,
        {"status_changed": None, "container_crashed": None},
        1.5,
        container_id=cid,
        what="one docker stop is one stop, one crash report and one start",
    )
    assert transitions(client, cid) == [("created", "running"), ("running", "stopped"), ("stopped", "running")]
    crashes = client.of("container_crashed", cid)
    assert [(c["exit_code"], c["crash_details"]["error"]) for c in crashes] == [(0, "Exited with code 0")]
    starts = client.of("activity_log", cid, lambda a: a["activity_type"] == "container_started")
    assert [a["details"]["reason"] for a in starts] == ["desired running", "desired running"]
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["state"] == "running" and status["docker_id"] == created["docker_id"], "restarted in place"
    await client.call("delete_container", {"container_id": cid})


async def test_docker_pause_behind_the_back_is_undone_at_once(client: Client, docker: aiodocker.Docker):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("dpause")})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    await wait_link(client, cid, True)
    paused_at = asyncio.get_running_loop().time()
    await docker.containers.container(created["docker_id"]).pause()
    unpaused = await client.wait_for(
        "activity_log", cid, lambda a: a["activity_type"] == "container_started" and a["details"].get("reason") == "desired running", count=2
    )
    assert unpaused["message"].endswith(" unpaused"), unpaused
    await client.wait_for("status_changed", cid, lambda e: (e["old_state"], e["new_state"]) == ("paused", "running"))
    record_timing("docker pause behind the back -> running again", asyncio.get_running_loop().time() - paused_at)
    await expect_quiet(client, {"status_changed": None, "container_crashed": None}, 1, container_id=cid, what="unpaused once, no crash")
    assert transitions(client, cid) == [("created", "running"), ("running", "paused"), ("paused", "running")]
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["state"] == "running" and status["docker_id"] == created["docker_id"] and not client.of("container_crashed", cid)
    await client.call("delete_container", {"container_id": cid})


async def test_a_container_started_behind_the_back_is_stopped_again(client: Client, docker: aiodocker.Docker):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("dkill")})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    await client.call("stop_container", {"container_id": cid})
    await docker.containers.container(created["docker_id"]).start()  # started behind the back: desired is stopped
    await client.wait_for("status_changed", cid, lambda e: e["new_state"] == "stopped", count=2, timeout=15)
    await expect_quiet(
        client, {"status_changed": None, "container_crashed": None}, 1, container_id=cid, what="stopped again once, and no crash reported"
    )
    assert transitions(client, cid) == [("created", "running"), ("running", "stopped"), ("stopped", "running"), ("running", "stopped")]
    assert not client.of("container_crashed", cid), "stopping what should be stopped is no crash"
    await client.call("delete_container", {"container_id": cid})


async def test_changed_configuration_recreates_create_before_delete(docker: aiodocker.Docker, tmp_path: Path):
    server = Server(tmp_path, "--stop-timeout", "10")
    server.start()
    client = await Client().connect(server.url)
    try:
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("drift")})
        cid = created["container_id"]
        await client.call("start_container", {"container_id": cid})
        await wait_link(client, cid, True)
    finally:
        await client.close()
    server.stop()
    # Same journal, same instance; only the stop timeout (part of every container's configuration) changed.
    server.args[server.args.index("--stop-timeout") + 1] = "2"
    server.start()
    began = asyncio.get_running_loop().time()
    client = await Client().connect(server.url)
    try:
        recreated = await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "container_created", timeout=20)
        assert recreated["details"]["reason"] == "spec changed"
        assert recreated["details"]["replaced_docker_id"] == created["docker_id"]
        await client.wait_for("status_changed", cid, lambda e: e["new_state"] == "running", timeout=20)
        record_timing("configuration drift -> recreated and running", asyncio.get_running_loop().time() - began)
        status = await wait_link(client, cid, True)
        assert status["docker_id"] == recreated["details"]["docker_id"] != created["docker_id"]
        info = await docker.containers.container(status["docker_id"]).show()
        assert info["Name"] == "/" + created["name"] and info["Config"]["StopTimeout"] == 2
        ours = await docker.containers.list(all=True, filters=labels.managed_filter(server.instance, cid))
        assert [c.id for c in ours] == [status["docker_id"]], "the old container is gone, no duplicate"
        await ping(client, cid)
        await expect_quiet(
            client,
            {"status_changed": None, "container_crashed": None, "activity_log": lambda a: a["activity_type"] == "container_created"},
            1.5,
            container_id=cid,
            what="recreated once, not again",
        )
        assert len(client.of("activity_log", cid, lambda a: a["activity_type"] == "container_created")) == 1
        seen = transitions(client, cid)
        assert seen == [("running", "created"), ("created", "running")], seen
        assert not client.of("container_crashed", cid), "replacing is not crashing"
        await client.call("delete_container", {"container_id": cid})
    finally:
        await client.close()
        server.stop()


async def test_an_orphan_is_reported_then_removed_after_the_grace_period(server: Server, client: Client, docker: aiodocker.Docker):
    orphan_id = uuid.uuid4().hex[:12]
    name = unique_name("orphan")
    container = await docker.containers.create(
        {
            "Image": "flow:latest",
            "Cmd": ["sleep", "3600"],
            "HostConfig": {"Init": True},
            "Labels": {labels.MANAGED: "true", labels.INSTANCE: server.instance, labels.CONTAINER_ID: orphan_id, labels.NAME: name},
        },
        name=name,
    )
    await container.start()
    found = await client.wait_for("activity_log", orphan_id, lambda a: a["details"].get("reason") == "orphan", timeout=15)
    assert found["activity_type"] == "container_error" and found["details"]["names"] == [name]
    assert (await container.show())["State"]["Running"], "kept during the grace period"
    # A client that connects after the report (at start-up nobody is connected) still finds it, in get_metrics.
    later = await Client().connect(server.url)
    try:
        pending = [o for o in (await later.call("get_metrics", {}))["orphans"] if o["container_id"] == orphan_id]
        assert pending == [
            {
                "container_id": orphan_id,
                "names": [name],
                "docker_ids": [container.id],
                "found_at": pytest.approx(found["details"]["remove_at"] - 3),  # the test server's --orphan-grace
                "remove_at": found["details"]["remove_at"],
                "removed_at": None,
            }
        ], pending
        removed = await client.wait_for("activity_log", orphan_id, lambda a: a["activity_type"] == "container_deleted", timeout=15)
        assert removed["details"] == {"reason": "orphan", "name": name, "docker_id": container.id, "image": "flow:latest"}
        gone = [o for o in (await later.call("get_metrics", {}))["orphans"] if o["container_id"] == orphan_id]
        assert len(gone) == 1 and gone[0]["removed_at"] >= gone[0]["remove_at"], gone
    finally:
        await later.close()
    try:
        await container.show()
        raise AssertionError("the orphan is still there")
    except aiodocker.DockerError as exc:
        assert exc.status == 404
    assert name not in [c["name"] for c in (await client.call("list_containers", {}))["containers"]]


async def test_a_runtime_that_stops_answering_pings_is_unhealthy_once(client: Client, docker: aiodocker.Docker):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("frozen")})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    await wait_link(client, cid, True)
    await client.wait_for("container_status_update", cid, lambda u: u["status"]["health"] == "healthy", timeout=10)
    top = await docker.containers.container(created["docker_id"]).top()
    pid_at = top["Titles"].index("PID")
    command_at = top["Titles"].index("CMD")
    runtime = [int(p[pid_at]) for p in top["Processes"] if p[command_at].startswith("python3 -m flow_runtime")]
    assert len(runtime) == 1, top
    os.kill(runtime[0], signal.SIGSTOP)  # alive for Docker, deaf on its link
    try:
        warning = await client.wait_for("container_health_warning", cid, timeout=15)
        assert warning["health"] == "unhealthy"
        await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "health_warning")
        assert (await client.call("get_container_status", {"container_id": cid}))["health"] == "unhealthy"
        assert len(client.of("container_health_warning", cid)) == 1
        await expect_quiet(client, "container_health_warning", 2, container_id=cid, what="one warning per transition")
    finally:
        os.kill(runtime[0], signal.SIGCONT)
    await wait_until(
        lambda: client.call("get_container_status", {"container_id": cid}),
        10,
        until=lambda s: s["health"] == "healthy",
        what="healthy again once it answers",
        interval=0.2,
    )
    assert len(client.of("container_health_warning", cid)) == 1
    assert transitions(client, cid) == [("created", "running")], "unhealthy is not a state change"
    await client.call("delete_container", {"container_id": cid})
