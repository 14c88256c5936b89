"""A state directory that fills up: requests fail fast, the controller does not act, the manager recovers.

The state directory is a real 256 KiB tmpfs (the tests run as root); a filler file takes its last byte.
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiodocker
import pytest

from tests.integration.harness import Client, Server, record_timing, unique_name

REQUEST_TIMEOUT = 3.0


@pytest.fixture
def tiny_state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "tiny-state"
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture
async def tiny_server(docker: aiodocker.Docker, tmp_path: Path, tiny_state_dir: Path) -> AsyncIterator[Server]:
    server = Server(tmp_path, "--state-dir", str(tiny_state_dir), "--request-timeout", str(REQUEST_TIMEOUT))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fill(path: Path) -> None:
    """Write until the filesystem refuses (ENOSPC): nothing is left for the journal."""
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


async def no_event_during(client: Client, event: str, container_id: str, seconds: float, why: str) -> None:
    """Quiet period: watch for `event` about `container_id` for `seconds`; any occurrence fails with `why`."""
    before = len(client.of(event, container_id))
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        seen = client.of(event, container_id)[before:]
        assert not seen, f"{why}: saw {event} {seen}"
        await asyncio.sleep(0.05)


async def journal_of(client: Client) -> dict:
    return (await client.call("get_metrics", {}, timeout=10))["journal"]


async def test_full_state_directory_answers_system_error_and_the_controller_does_not_act(
    docker: aiodocker.Docker, tiny_server: Server, tiny_state_dir: Path
) -> None:
    state = tiny_state_dir / tiny_server.instance
    client = await Client().connect(tiny_server.url)
    try:
        created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("full")})
        cid = created["container_id"]
        await client.call("start_container", {"container_id": cid})
        assert (await journal_of(client))["writable"] is True

        filler = tiny_state_dir / "filler"
        fill(filler)
        # The journal's last page may still hold a few lines: a start of a running container changes nothing in
        # Docker and shows when the journal can take no more (its line is as long as the delete's).
        for attempt in range(40):
            again = await client.call("start_container", {"container_id": cid}, timeout=REQUEST_TIMEOUT + 5)
            if again.get("error_type") is not None:
                break
        assert again.get("error_type") == "system_error" and again["details"]["reason"] == "state_not_writable", again
        asked = time.monotonic()
        answer = await client.call("delete_container", {"container_id": cid}, timeout=REQUEST_TIMEOUT + 5)
        took = time.monotonic() - asked
        assert answer.get("error_type") == "system_error", answer
        details = answer["details"]
        assert details["reason"] == "state_not_writable", details
        assert details["path"] == str(state) and "No space left on device" in details["error"], details
        assert details["container_id"] == cid and details["operation"] == "delete_container"
        assert took < REQUEST_TIMEOUT + 0.5, f"answered after {took:.2f} s"
        record_timing("state directory full: delete_container -> system_error", took)

        # The intent was not applied: the controller never acted on it, and the record is as it was.
        await no_event_during(client, "status_changed", cid, 1.5, "the controller acted on a delete never saved")
        container = await docker.containers.get(created["docker_id"])
        assert container["State"]["Running"] is True
        listing = (await client.call("list_containers", {}))["containers"]
        assert [(c["id"], c["desired_state"], c["status"]) for c in listing if c["id"] == cid] == [(cid, "running", "running")]

        name = unique_name("never")
        refused = await client.call("create_container", {"image": "flow:latest", "name": name}, timeout=REQUEST_TIMEOUT + 5)
        assert refused.get("error_type") == "system_error" and refused["details"]["reason"] == "state_not_writable"
        assert not await docker.containers.list(all=True, filters={"name": [name]}), "a create never saved"

        journal = await journal_of(client)
        assert journal["writable"] is False and "No space left on device" in journal["last_error"], journal
        assert journal["path"] == str(state) and journal["since"] <= time.time()

        filler.unlink()  # space returns: the writer's retry finds it without any request
        freed = time.monotonic()
        while not (journal := await journal_of(client))["writable"]:
            assert time.monotonic() < freed + 10, journal
            await asyncio.sleep(0.1)
        record_timing("state directory full: space freed -> journal writable", time.monotonic() - freed)
        assert journal["failed_writes"] >= 2  # the delete, the create (and retries)

        assert (await client.call("delete_container", {"container_id": cid}))["status"] == "deleted"
        with pytest.raises(aiodocker.DockerError):
            await docker.containers.get(created["docker_id"])
        assert (await client.call("create_container", {"image": "flow:latest", "name": name}))["name"] == name
        await client.call("delete_container", {"container_id": name})
    finally:
        await client.close()
    log = tiny_server.log()
    assert log.count("is not writable") == 1, "the condition is logged once, not once per retry:\n" + log
    assert log.count("is writable again") == 1, log
