"""flow_manager.client.FlowClient against the real server: typed answers, one error type, events, reconnection."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from api import responses
from flow_manager.client import FlowClient, FlowError
from tests.integration.harness import Server, unique_name, wait_until

ROOT = Path(__file__).resolve().parents[2]


async def test_every_method_answers_with_its_model(server: Server) -> None:
    name = unique_name("fc")
    async with FlowClient(server.url) as fm:
        changes = fm.subscribe({"status_changed"})
        created = await fm.create("flow:latest", name=name, environment={"A": "1"})
        assert isinstance(created, responses.ContainerCreated) and created.name == name and created.image == "flow:latest"
        started = await fm.start(name)
        assert started.container_id == created.container_id and started.status == "running"
        event = await wait_until(changes.queue.get, 30, what="a status_changed event")
        assert event.kind == "status_changed" and event.container_id == created.container_id
        assert isinstance(event.data, responses.StatusChanged)
        await wait_until(lambda: fm.status(name), 30, what="the link", until=lambda s: s.socket_connected)
        reply = await fm.request(name, {"command": "ping"})
        assert reply.container_id == created.container_id and reply.message["command"] == "pong"
        listed = await fm.list()
        assert created.container_id in {entry.id for entry in listed.containers}
        logs = await fm.logs(name, tail=5)
        assert logs.container_id == created.container_id and logs.truncated is False
        assert (await fm.subscribe_messages([name])).container_ids == [created.container_id]
        assert (await fm.subscribe_messages(None)).container_ids is None
        assert (await fm.restart(name)).status == "running"
        assert (await fm.stop(name)).status == "stopped"
        assert "loop" in (await fm.metrics()).model_extra  # type: ignore[operator]
        assert (await fm.delete(name)).status == "deleted"
        with pytest.raises(FlowError) as failure:
            await fm.status(name)
        assert failure.value.error_type == "container_not_found" and failure.value.details["operation"] == "get_container_status"
        with pytest.raises(FlowError) as invalid:
            await fm.create("Not An Image!")
        assert invalid.value.error_type == "validation_error" and invalid.value.details["field"] == "image"


async def test_follow_logs_yields_batches_until_the_container_is_deleted(server: Server) -> None:
    name = unique_name("fcl")
    script = "import time\nfor i in range(10**6):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n"
    async with FlowClient(server.url) as fm, FlowClient(server.url) as other:
        await fm.create("flow:latest", name=name, command=["python3", "-c", script])
        await fm.start(name)
        seen: list[str] = []
        deleting: asyncio.Task[object] | None = None
        async for batch in fm.follow_logs(name):
            seen += [line.text for line in batch.lines]
            if len(seen) >= 5 and deleting is None:
                deleting = asyncio.create_task(other.delete(name))  # deleted by someone else: the follow ends with a final batch
            if batch.ended:
                assert batch.reason == "deleted"
                break
        assert seen[:2] and all(text.startswith("line ") for text in seen)
        assert deleting is not None and (await deleting).status == "deleted"  # type: ignore[attr-defined]


async def test_reconnects_by_itself_and_says_so(docker: object, tmp_path: Path) -> None:
    own = Server(tmp_path)
    own.start()
    try:
        async with FlowClient(own.url) as fm:
            events = fm.subscribe({"disconnected", "reconnected"})
            own.stop()
            assert (await wait_until(events.queue.get, 30, what="disconnected")).kind == "disconnected"
            with pytest.raises(FlowError) as failure:
                await fm.list()
            assert failure.value.error_type == "connection_error"
            own.start()
            assert (await wait_until(events.queue.get, 30, what="reconnected")).kind == "reconnected"
            assert (await fm.list()).count == 0
    finally:
        own.stop()


def test_the_documented_example_runs(server: Server) -> None:
    text = (ROOT / "docs" / "client.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S)
    assert example is not None
    code = example.group(1).replace("client-demo", unique_name("doc"))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "FLOW_MANAGER_URL": server.url}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "container_not_found", result.stdout
