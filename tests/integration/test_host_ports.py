"""A host port is published by one managed container at most, and a port that cannot be bound is reported
once per change of cause, not once per retry."""

from __future__ import annotations

import socket

import aiodocker

from tests.integration.harness import Client, Server, free_port, unique_name, wait_until


async def test_a_host_port_another_container_publishes_is_refused_at_create(client: Client, docker: aiodocker.Docker) -> None:
    port = free_port()
    first = await client.call("create_container", {"image": "flow:latest", "name": unique_name("port-a"), "ports": {"8080": port}})
    name = unique_name("port-b")
    second = await client.call("create_container", {"image": "flow:latest", "name": name, "ports": {"80": port}})
    assert second["error_type"] == "validation_error" and second["details"]["field"] == "ports.80", second
    assert first["container_id"] in second["message"]
    assert not await docker.containers.list(all=True, filters={"name": [name]}), "nothing was created in Docker"
    assert (await client.call("delete_container", {"container_id": first["container_id"]}))["status"] == "deleted"
    again = await client.call("create_container", {"image": "flow:latest", "name": name, "ports": {"80": port}})
    assert again.get("status") == "created", "the port is free again once its container is deleted"
    await client.call("delete_container", {"container_id": again["container_id"]})


async def test_a_port_held_outside_the_manager_is_reported_once_while_the_start_is_retried(server: Server, client: Client) -> None:
    observer = await Client().connect(server.url)
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("port-held"), "ports": {"80": port}})
        cid = created["container_id"]
        started = await client.call("start_container", {"container_id": cid})
        assert started["error_type"] == "docker_api_error" and started["details"]["retrying"] is True, started

        def retries() -> int:
            return server.log().count(f"reconcile of {cid} failed")

        await wait_until(retries, 20, interval=0.2, what="the start retried with back-off at least 4 times", until=lambda n: n >= 4)
        errors = observer.of("error", where=lambda e: e.get("details", {}).get("container_id") == cid)
        activities = observer.of("activity_log", where=lambda a: a.get("container_id") == cid and a.get("activity_type") == "container_error")
        assert len(activities) == 1, activities
        assert len(errors) <= 1, errors  # the requester got the first; the retries broadcast nothing new
        await client.call("delete_container", {"container_id": cid})
    finally:
        holder.close()
        await observer.close()
