"""Concurrent update_container over large code directories: every request answers updated or superseded (no
internal error), the archives of deleted containers are removed, and the manager's memory stays bounded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.integration.harness import Client, Server, unique_name, wait_until

CLIENTS, UPDATES, CONTAINERS, MB_PER_DIR = 8, 4, 4, 5


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def code_dir(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for i in range(MB_PER_DIR):
        (directory / f"blob{i}.bin").write_bytes(os.urandom(1 << 20))
    (directory / "main.py").write_text("def handle(message):\n    return {'ok': True}\n")
    return directory


async def test_concurrent_updates_answer_updated_or_superseded_and_leave_no_archive(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    assert server.proc is not None
    dirs = [code_dir(tmp_path / f"code{i}") for i in range(CONTAINERS)]
    clients = [await Client().connect(server.url) for _ in range(CLIENTS)]
    try:
        created = [
            await clients[0].call("create_container", {"image": "flow:latest", "name": unique_name(f"upd{i}"), "code_path": str(dirs[i])})
            for i in range(CONTAINERS)
        ]
        for c in created:
            assert (await clients[0].call("start_container", {"container_id": c["container_id"]}))["status"] == "running"
        baseline = rss_kib(server.proc.pid, "VmRSS")

        async def updates(n: int) -> list[dict]:
            target = n % CONTAINERS
            replies = []
            for u in range(UPDATES):
                await asyncio.to_thread((dirs[target] / f"version-{n}.txt").write_text, f"client {n} update {u}")
                replies.append(
                    await clients[n].call("update_container", {"container_id": created[target]["container_id"], "code_path": str(dirs[target])})
                )
            return replies

        replies = [r for batch in await asyncio.gather(*(updates(n) for n in range(CLIENTS))) for r in batch]
        peak = rss_kib(server.proc.pid, "VmHWM")
        outcomes = [r.get("status") or ("superseded" if r.get("details", {}).get("superseded") else r.get("error_type")) for r in replies]
        assert set(outcomes) <= {"updated", "superseded"}, [
            r for r in replies if r.get("status") != "updated" and not r.get("details", {}).get("superseded")
        ]
        assert outcomes.count("updated") >= CONTAINERS, outcomes  # the last update of each container at least
        assert "Traceback" not in server.log() and "failed unexpectedly" not in server.log()
        code_store = tmp_path / "state" / server.instance / "code"
        assert len(list(code_store.glob("*.tar"))) <= CONTAINERS, "only the revisions the records refer to are kept"

        for c in created:
            assert (await clients[0].call("delete_container", {"container_id": c["container_id"]}))["status"] == "deleted"
        await wait_until(lambda: sorted(p.name for p in code_store.iterdir()), 10, what="every archive removed", until=lambda left: left == [])
        print(f"RSS baseline {baseline / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, outcomes {sorted(set(outcomes))} x {len(outcomes)}")
        assert peak - baseline < 150 * 1024, f"peak RSS {peak / 1024:.0f} MiB vs {baseline / 1024:.0f} MiB before the updates"
    finally:
        for client in clients:
            await client.close()
        server.stop()
