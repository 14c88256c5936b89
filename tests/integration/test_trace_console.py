"""`--trace-exporter console` and bad exporter names, as an operator meets them (issue 18, item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.harness import Client, Server, unique_name, wait_until

CONSOLE_LATENCY = 2.0  # s from the answer to the span on the console (the old batch waited up to 5 s)


async def test_console_spans_appear_while_the_server_runs(docker, tmp_path: Path) -> None:
    """A span is printed soon after it ends, not only when the process exits."""
    server = Server(tmp_path, "--trace-exporter", "console")
    server.start()
    try:
        client = await Client().connect(server.url)
        try:
            created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("console")})
            cid = created["container_id"]
            await client.call("delete_container", {"container_id": cid})
        finally:
            await client.close()
        # well within a second when spans are written as they end; a batch held for 5 s misses it
        await wait_until(
            lambda: f'container_id": "{cid}"' in server.log() and '"name": "reconcile"' in server.log(),
            CONSOLE_LATENCY,
            what="a reconcile span of the container on the console while the server runs",
        )
        assert server.proc is not None and server.proc.poll() is None, "the server must still be running"
    finally:
        server.stop()


def test_an_unknown_exporter_is_one_line_and_rc_2(tmp_path: Path) -> None:
    """Like every other bad setting: `flow-manager: ...` on one line, exit status 2, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "flow_manager.cli", "serve", "--no-build-image", "--state-dir", str(tmp_path), "--trace-exporter", "jaeger"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flow-manager: ") and "jaeger" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
