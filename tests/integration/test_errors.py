"""Every failure reaches the requester as one documented `error` event."""

from __future__ import annotations

from datetime import datetime

import aiodocker
from testcontainers.core.container import DockerContainer

from controller import labels
from tests.integration.harness import Client, unique_name


def assert_error(payload: dict, error_type: str, operation: str) -> None:
    assert payload["error"] is True and payload["error_type"] == error_type, payload
    assert payload["details"]["operation"] == operation and isinstance(payload["message"], str) and payload["message"]
    datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))


async def test_unknown_container_for_every_operation(client: Client):
    for operation in ("start_container", "stop_container", "restart_container", "delete_container", "get_container_status"):
        reply = await client.call(operation, {"container_id": "0123456789ab"})
        assert_error(reply, "container_not_found", operation)
        assert reply["details"]["container_id"] == "0123456789ab"
    assert len(client.of("error", "0123456789ab")) == 0  # container_id sits in details, not at the top
    assert len(client.of("error")) == 5


async def test_validation_errors(client: Client):
    cases = [
        ("create_container", {"name": "x"}, "image"),
        ("create_container", {"image": 7}, "image"),
        ("create_container", {"image": "flow:latest", "ports": {"80": "80"}}, "ports.80"),
        ("start_container", {}, "container_id"),
        ("stop_container", {"container_id": 12}, "container_id"),
        ("start_container", "abc", "(request)"),
        ("delete_container", None, "(request)"),
    ]
    for operation, payload, field in cases:
        reply = await client.call(operation, payload)
        assert_error(reply, "validation_error", operation)
        assert reply["details"]["field"] == field, reply
    assert len(client.of("error")) == len(cases)


async def test_missing_image_is_image_not_found_and_leaves_nothing(client: Client, docker: aiodocker.Docker):
    name = unique_name("noimg")
    reply = await client.call("create_container", {"image": "no-such-image:1", "name": name})
    assert_error(reply, "image_not_found", "create_container")
    assert not await docker.containers.list(all=True, filters={"name": [name]})
    assert all(c["name"] != name for c in (await client.call("list_containers", {}))["containers"])


async def test_a_name_in_use_is_an_error_never_a_second_container(client: Client, docker: aiodocker.Docker):
    name = unique_name("dup")
    first = await client.call("create_container", {"image": "flow:latest", "name": name})
    again = await client.call("create_container", {"image": "flow:latest", "name": name})
    assert_error(again, "validation_error", "create_container")
    assert again["details"]["field"] == "name"
    assert len(await docker.containers.list(all=True, filters={"name": [f"^/{name}$"]})) == 1
    await client.call("delete_container", {"container_id": first["container_id"]})


def test_foreign_containers_are_never_listed_and_their_names_are_refused(server):
    import asyncio

    async def scenario(foreign_name: str) -> None:
        c = await Client().connect(server.url)
        try:
            listing = await c.call("list_containers", {})
            assert all(entry["name"] != foreign_name for entry in listing["containers"])
            reply = await c.call("create_container", {"image": "flow:latest", "name": foreign_name})
            assert_error(reply, "docker_api_error", "create_container")
            assert reply["details"]["docker_status"] == 409
        finally:
            await c.close()

    name = unique_name("foreign")
    with DockerContainer("flow:latest").with_name(name) as foreign:  # started by testcontainers, not by us
        wrapped = foreign.get_wrapped_container()
        wrapped.reload()  # the object's status is the one read when it was created
        assert wrapped.name == name and wrapped.status == "running", wrapped.status
        assert labels.MANAGED not in wrapped.labels, "a container of this manager is no foreign one"
        asyncio.run(scenario(name))
