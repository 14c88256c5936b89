"""A container's disk use on the host is bounded: its Docker log rotates; its writable layer is bounded where
the storage driver can, and the manager says at start when it cannot."""

from __future__ import annotations

from pathlib import Path

import aiodocker

from controller.adapters.docker.storage import driver_of, may_support
from tests.integration.harness import Client, Server, unique_name, wait_until

FLOOD = "import sys\nfor _ in range(30000): sys.stdout.write('x' * 1000 + '\\n')\nprint('flood done', flush=True)\nimport time; time.sleep(600)"


async def test_a_container_flooding_stdout_keeps_its_log_under_the_cap(docker: aiodocker.Docker, tmp_path: Path) -> None:
    server = Server(tmp_path, "--container-log-max-size", "1m", "--container-log-max-files", "2")
    server.start()
    client = await Client().connect(server.url)
    try:
        created = await client.call(
            "create_container", {"image": "flow:latest", "name": unique_name("logflood"), "command": ["python3", "-c", FLOOD]}
        )
        cid = created["container_id"]
        await client.call("start_container", {"container_id": cid})
        info = await docker.containers.container(created["docker_id"]).show()
        assert info["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
        log_path = Path(info["LogPath"])

        def written() -> int:  # Docker renames the full file to .1 when it rotates
            return sum(p.stat().st_size for p in log_path.parent.glob(log_path.name + "*"))

        await wait_until(
            lambda: log_path.exists() and b"flood done" in log_path.read_bytes()[-4096:], 90, interval=0.2, what="all 30 MB printed and logged"
        )
        files = sorted(log_path.parent.glob(log_path.name + "*"))
        assert [p.name for p in files] == [log_path.name, log_path.name + ".1"], "at most max-file files"
        assert all(p.stat().st_size <= (1 << 20) + 4096 for p in files), [(p.name, p.stat().st_size) for p in files]
        assert written() <= 2 * ((1 << 20) + 4096), "30 MB printed, at most 2 MiB kept"
        await client.call("delete_container", {"container_id": cid})
    finally:
        await client.close()
        server.stop()
    info = await docker.system.info()
    driver, backing = driver_of(info)
    if may_support(driver, backing):
        assert "writable layer of each container bounded" in server.log() or "writable layers are NOT bounded" in server.log()
    else:
        assert f"writable layers are NOT bounded: storage driver {driver} on {backing}" in server.log()
