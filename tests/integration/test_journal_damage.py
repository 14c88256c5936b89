"""The real server on a damaged journal keeps every intact record; on a read-only state directory it says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiodocker

from tests.integration.harness import Client, Server, unique_name

DAMAGE = b'[]\n{"op": "put", "record": {"id": "\xff"}}\n' + b"[" * 100_000 + b"\n"


async def test_a_damaged_journal_is_loaded_around_the_damage(docker: aiodocker.Docker, tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    client = await Client().connect(server.url)
    try:
        first = await client.call("create_container", {"image": "flow:latest", "name": unique_name("before")})
        second = await client.call("create_container", {"image": "flow:latest", "name": unique_name("after")})
    finally:
        await client.close()
        server.stop()
    journal = tmp_path / "state" / server.instance / "records.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    damaged_at = len(b"".join(lines[:2]))
    journal.write_bytes(b"".join(lines[:2]) + DAMAGE + b"".join(lines[2:]))  # format, first | damage | second

    server.start()
    client = await Client().connect(server.url)
    try:
        listed = {c["id"] for c in (await client.call("list_containers", {}))["containers"]}
        assert {first["container_id"], second["container_id"]} <= listed
        assert "journal: 3 damaged record(s) skipped" in server.log() and f"byte {damaged_at} " in server.log()
        for c in (first, second):
            assert (await client.call("delete_container", {"container_id": c["container_id"]}))["status"] == "deleted"
    finally:
        await client.close()
        server.stop()


def test_a_read_only_state_directory_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "default").mkdir(parents=True)
    serve = [sys.executable, "-m", "flow_manager.cli", "serve", "--no-build-image", "--state-dir", str(state), "--port", "0"]
    script = f'mount --bind "{state}" "{state}" && mount -o remount,ro,bind "{state}" "{state}" && exec "$@"'
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *serve], capture_output=True, timeout=60, cwd=Path.cwd()
    )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.strip().splitlines() == [f"flow-manager: state directory {state / 'default'} cannot be used: Read-only file system"], err
