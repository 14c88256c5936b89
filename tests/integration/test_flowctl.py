"""flowctl against the real server and engine: every verb, output parsed in -o json, tables by their columns."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from flow_manager.client import FlowClient
from flow_manager.flowctl.top import TOP_EVENTS, TopModel, render
from tests.integration.harness import Server, unique_name, wait_until

ROOT = Path(__file__).resolve().parents[2]
FLOWCTL = [sys.executable, "-m", "flow_manager.flowctl"]


def flowctl(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*FLOWCTL, *args], cwd=ROOT, env={**os.environ, "FLOW_MANAGER_URL": server.url}, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def as_json(server: Server, *args: str) -> Any:
    return json.loads(flowctl(server, *args, "-o", "json").stdout)


def test_every_verb(server: Server, tmp_path: Path) -> None:
    name = unique_name("ctl")
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("def handle(message):\n    return {'command': 'v2', 'data': message}\n")
    created = as_json(server, "create", name, "--env", "A=1", "--start")
    assert created["name"] == name and created["state"] == "running"
    cid = created["container_id"]
    table = flowctl(server, "ls").stdout
    assert table.splitlines()[0].split() == ["NAME", "STATUS", "IMAGE", "PORTS"] and name in table
    wide = flowctl(server, "ls", "-o", "wide").stdout.splitlines()[0].split()
    assert wide == ["NAME", "STATUS", "IMAGE", "PORTS", "ID", "DOCKER", "ID", "DESIRED", "CREATED"]
    assert cid in {entry["id"] for entry in as_json(server, "ls")["containers"]}
    assert "container_id: " + cid in flowctl(server, "status", name, "-o", "yaml").stdout
    asyncio.run(wait_link(server, name))
    sent = as_json(server, "send", name, '{"command": "ping"}')
    assert sent["status"] == "sent"
    reply = as_json(server, "send", name, '{"command": "ping"}', "--wait-reply")
    assert reply["container_id"] == cid and reply["message"]["command"] == "pong"
    updated = as_json(server, "update", name, "--code", str(code))
    assert updated["status"] == "updated" and updated["files"] == 1
    assert [r["status"] for r in as_json(server, "stop", name)] == ["stopped"]
    assert [r["status"] for r in as_json(server, "start", name)] == ["running"]
    assert [r["status"] for r in as_json(server, "restart", name)] == ["running"]
    lines = [json.loads(raw) for raw in flowctl(server, "logs", name, "--tail", "5", "-o", "json").stdout.splitlines()]  # one object a line
    assert all(set(line) == {"stream", "text", "timestamp"} for line in lines)
    assert [r["status"] for r in as_json(server, "rm", name)] == ["deleted"]


async def wait_link(server: Server, name: str) -> None:
    async with FlowClient(server.url) as fm:
        await wait_until(lambda: fm.status(name), 30, what="the link", until=lambda s: s.socket_connected)


def test_a_failing_request_exits_non_zero_with_the_error_type(server: Server) -> None:
    missing = flowctl(server, "status", "no-such-container", check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: container_not_found:")
    invalid = flowctl(server, "create", unique_name("bad"), "--image", "Not An Image!", check=False)
    assert invalid.returncode == 1 and "validation_error" in invalid.stderr
    nowhere = subprocess.run([*FLOWCTL, "--url", "http://127.0.0.1:9", "ls"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert nowhere.returncode == 1 and "connection_error" in nowhere.stderr


async def test_logs_follow_sees_new_lines_and_lines_after_a_restart(server: Server) -> None:
    name = unique_name("ctlf")
    script = "import time\nrun = time.time()\nfor i in range(10**6):\n    print(f'n {i} {run}', flush=True)\n    time.sleep(0.1)\n"
    async with FlowClient(server.url) as fm:
        await fm.create("flow:latest", name=name, command=["python3", "-c", script])
        await fm.start(name)
        follower = await asyncio.create_subprocess_exec(
            *FLOWCTL,
            "logs",
            name,
            "-f",
            "--tail",
            "0",
            "-o",
            "json",
            cwd=ROOT,
            env={**os.environ, "FLOW_MANAGER_URL": server.url},
            stdout=asyncio.subprocess.PIPE,
        )
        assert follower.stdout is not None
        started = time.time()
        runs: list[str] = []

        async def next_line() -> dict[str, Any]:
            raw = await asyncio.wait_for(follower.stdout.readline(), 30)  # type: ignore[union-attr]
            assert raw, "flowctl logs -f ended early"
            return json.loads(raw)

        first = await next_line()
        assert first["stream"] == "stdout" and first["text"].startswith("n ")
        runs.append(first["text"].split()[2])
        assert float(runs[0]) < started + 30
        await fm.restart(name)
        while True:
            line = await next_line()
            if line["text"].split()[2] != runs[0]:
                break
        await fm.delete(name)
        assert await asyncio.wait_for(follower.wait(), 30) == 0  # the follow ends when the container is deleted


async def test_top_shows_a_state_change_within_a_second(server: Server) -> None:
    name = unique_name("top")
    async with FlowClient(server.url) as fm, FlowClient(server.url) as actor:
        created = await actor.create("flow:latest", name=name)
        await actor.start(name)
        model, updates = TopModel(), fm.subscribe(TOP_EVENTS)
        await model.load(fm)
        assert model.rows[created.container_id].state == "running"
        changed = actor.subscribe({"status_changed"}, created.container_id)
        stopping = asyncio.create_task(actor.stop(name))
        seen_at = None
        while seen_at is None or model.rows[created.container_id].state == "running":
            event = await asyncio.wait_for(updates.queue.get(), 30)
            model.apply(event)
            if model.rows[created.container_id].state != "running":
                seen_at = time.monotonic()
        change = await asyncio.wait_for(changed.queue.get(), 5)
        assert change.data.new_state == model.rows[created.container_id].state  # type: ignore[attr-defined]
        console = Console(record=True, width=200)
        console.print(render(model))
        screen = console.export_text()
        assert screen.splitlines()[1].split()[:4] == ["NAME", "STATE", "HEALTH", "UPTIME"]
        row = next(line for line in screen.splitlines() if line.startswith(name))
        assert row.split()[1] == model.rows[created.container_id].state != "running"
        await stopping
        await actor.delete(name)


async def test_events_prints_what_happens_to_one_container(server: Server) -> None:
    name = unique_name("ctle")
    async with FlowClient(server.url) as fm:
        created = await fm.create("flow:latest", name=name)
        watcher = await asyncio.create_subprocess_exec(
            *FLOWCTL,
            "events",
            "-f",
            "--container",
            name,
            "--kind",
            "status_changed",
            "--count",
            "1",
            "-o",
            "json",
            cwd=ROOT,
            env={**os.environ, "FLOW_MANAGER_URL": server.url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(100):  # start once the watcher is connected: retried while it has printed nothing
            await fm.start(name)
            try:
                out, _ = await asyncio.wait_for(watcher.communicate(), 15)
                break
            except TimeoutError:
                await fm.stop(name)
        event = json.loads(out.decode().splitlines()[0])
        assert event["event"] == "status_changed" and event["container_id"] == created.container_id
        assert watcher.returncode == 0
        await fm.delete(name)


def test_help_has_examples_and_completion_is_clicks(server: Server) -> None:
    for verb in ("ls", "create", "start", "stop", "restart", "rm", "status", "update", "send", "logs", "events", "top"):
        assert "Examples:" in flowctl(server, verb, "--help").stdout, verb
    assert "_FLOWCTL_COMPLETE" in flowctl(server, "completion", "bash").stdout
