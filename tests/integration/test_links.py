"""Unix-socket links: messages both ways, in-place code updates, and links that come back by themselves."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket as pysocket
import struct
import subprocess
from pathlib import Path

import aiodocker

from tests.integration.harness import Client, expect_quiet, unique_name

JS_DIR = Path(__file__).parent.parent / "js"


async def running_with_link(client: Client, **create: object) -> dict:
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("link"), **create})
    await client.call("start_container", {"container_id": created["container_id"]})
    await wait_link(client, created["container_id"], True)
    return created


async def wait_link(client: Client, cid: str, connected: bool, timeout: float = 15) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await client.call("get_container_status", {"container_id": cid})
        if status["socket_connected"] is connected:
            return status
        assert asyncio.get_running_loop().time() < deadline, f"socket_connected never became {connected}: {status}"
        await asyncio.sleep(0.05)


async def ping(client: Client, cid: str) -> dict:
    before = len(client.of("message_received", cid, lambda m: m["message"]["command"] == "pong"))
    sent = await client.call("send_message", {"container_id": cid, "message": {"command": "ping"}})
    assert sent == {"container_id": cid, "message": {"command": "ping"}, "status": "sent"}
    return await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "pong", count=before + 1, timeout=10)


async def test_subscribe_messages_narrows_one_clients_message_received(server, client: Client):
    """Extension: a client that subscribes to some containers gets only their messages; others still get all."""
    narrow = await Client().connect(server.url)
    try:
        first, second = await running_with_link(client), await running_with_link(client)
        answer = await narrow.call("subscribe_messages", {"container_ids": [first["name"]]})  # a name resolves to its id
        assert answer == {"container_ids": [first["container_id"]]}
        await narrow.wait_for("messages_subscribed", None)
        unknown = await narrow.call("subscribe_messages", {"container_ids": ["no-such-container"]})
        assert unknown["error_type"] == "container_not_found"
        malformed = await narrow.call("subscribe_messages", {"container_ids": "everything"})
        assert malformed["error_type"] == "validation_error" and malformed["details"]["field"] == "container_ids"

        await ping(client, second["container_id"])  # the default client still hears every container
        await ping(client, first["container_id"])
        await narrow.wait_for("message_received", first["container_id"], lambda m: m["message"]["command"] == "pong")
        assert not narrow.of("message_received", second["container_id"])
        await expect_quiet(
            narrow,
            "message_received",
            0.3,
            container_id=second["container_id"],
            what="not subscribed to the second container (and the refused requests changed nothing)",
        )

        assert await narrow.call("subscribe_messages", {"container_ids": []}) == {"container_ids": []}
        await ping(client, first["container_id"])
        await expect_quiet(narrow, "message_received", 0.3, container_id=first["container_id"], what="an empty list takes no messages")
        assert len(narrow.of("message_received", first["container_id"])) == 1

        assert await narrow.call("subscribe_messages", {"container_ids": None}) == {"container_ids": None}
        await ping(client, second["container_id"])
        await narrow.wait_for("message_received", second["container_id"], lambda m: m["message"]["command"] == "pong")
        for created in (first, second):
            await client.call("delete_container", {"container_id": created["container_id"]})
    finally:
        await narrow.close()


async def test_ping_pong_reaches_every_client(server, client: Client, docker: aiodocker.Docker):
    other = await Client().connect(server.url)
    try:
        created = await running_with_link(client)
        cid = created["container_id"]
        assert Path(created["socket_path"]).is_symlink()
        mounts = (await docker.containers.container(created["docker_id"]).show())["Mounts"]
        assert [(m["Source"], m["Destination"]) for m in mounts] == [(f"{server.socket_dir}/.links/{cid}", "/run/flow")], (
            "a container sees its own link only"
        )
        pong = await ping(client, cid)
        assert pong["timestamp"].endswith("Z") and pong["container_id"] == cid
        await other.wait_for("message_received", cid, lambda m: m["message"]["command"] == "pong")
        await client.wait_for("message_sent", cid)
        await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "message_sent")
        await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "message_received")
        status = await client.call("get_container_status", {"container_id": cid})
        assert status["last_communication"] is not None and status["last_communication"].endswith("Z")
        await client.call("delete_container", {"container_id": cid})
        assert not Path(created["socket_path"]).exists() and not Path(created["socket_path"]).is_symlink()
    finally:
        await other.close()


async def test_messages_arrive_in_order_and_none_are_lost(client: Client):
    cid = (await running_with_link(client))["container_id"]
    for i in range(200):  # the default code echoes every message
        await client.sio.emit("send_message", {"container_id": cid, "message": {"command": "n", "data": {"i": i}}})
    await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "echo", count=200, timeout=30)
    echoed = [m["message"]["data"]["data"]["i"] for m in client.of("message_received", cid) if m["message"]["command"] == "echo"]
    assert echoed == list(range(200))
    await client.call("delete_container", {"container_id": cid})


def write_code(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(f'''
import os
def handle(message):
    if message.get("command") == "write":
        with open("/opt/flow/notes.txt", "a") as f:
            f.write("{version}\\n")
    if message.get("command") == "crash":
        raise ValueError("asked to fail")
    notes = open("/opt/flow/notes.txt").read() if os.path.exists("/opt/flow/notes.txt") else ""
    return {{"command": "answer", "data": {{"version": "{version}", "notes": notes}}}}
''')
    return directory


async def ask(client: Client, cid: str, command: str) -> dict:
    before = len(client.of("message_received", cid, lambda m: m["message"]["command"] in ("answer", "error")))
    await client.call("send_message", {"container_id": cid, "message": {"command": command}})
    reply = await client.wait_for("message_received", cid, lambda m: m["message"]["command"] in ("answer", "error"), count=before + 1, timeout=10)
    return reply["message"]


async def test_code_updates_keep_the_container_and_its_files(client: Client, docker: aiodocker.Docker, tmp_path: Path):
    v1, v2 = write_code(tmp_path / "v1", "v1"), write_code(tmp_path / "v2", "v2")
    created = await running_with_link(client, code_path=str(v1))
    cid, docker_id = created["container_id"], created["docker_id"]
    assert (await ask(client, cid, "write"))["data"] == {"version": "v1", "notes": "v1\n"}

    updated = await client.call("update_container", {"container_id": cid, "code_path": str(v2)})
    assert {k: updated[k] for k in ("container_id", "code_path", "status")} == {"container_id": cid, "code_path": str(v2), "status": "updated"}
    await client.wait_for("container_updated", cid)
    await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "container_updated")
    assert (await ask(client, cid, "write"))["data"] == {"version": "v2", "notes": "v1\nv2\n"}

    write_code(tmp_path / "v3", "v3")
    third = await client.call("update_container", {"container_id": cid, "code_path": str(tmp_path / "v3")})
    assert third["code_revision"] not in (updated["code_revision"], created["code_revision"])
    assert (await ask(client, cid, "read"))["data"] == {"version": "v3", "notes": "v1\nv2\n"}
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["docker_id"] == docker_id and status["running_revision"] == third["code_revision"]

    failure = await ask(client, cid, "crash")  # user code raising: reported, runtime keeps going
    assert failure["command"] == "error" and "asked to fail" in failure["data"]["error"]
    assert (await ask(client, cid, "read"))["data"]["version"] == "v3"

    bad = await client.call("update_container", {"container_id": cid, "code_path": str(tmp_path / "missing")})
    assert bad["error_type"] == "validation_error" and bad["details"]["field"] == "code_path"
    assert (await client.call("get_container_status", {"container_id": cid}))["code_revision"] == third["code_revision"]
    assert (await docker.containers.container(docker_id).show())["State"]["Running"]
    await client.call("delete_container", {"container_id": cid})


async def test_recreated_container_comes_back_with_the_desired_revision(client: Client, docker: aiodocker.Docker, tmp_path: Path):
    created = await running_with_link(client, code_path=str(write_code(tmp_path / "a", "va")))
    cid = created["container_id"]
    await client.call("update_container", {"container_id": cid, "code_path": str(write_code(tmp_path / "b", "vb"))})
    shutil.rmtree(tmp_path / "b")  # the snapshot, not the directory, is what gets deployed later
    await docker.containers.container(created["docker_id"]).delete(force=True)
    await client.wait_for("status_changed", cid, lambda e: e["new_state"] == "running", count=2, timeout=20)
    await wait_link(client, cid, True)
    assert (await ask(client, cid, "read"))["data"]["version"] == "vb"
    await client.call("delete_container", {"container_id": cid})


async def test_link_follows_the_container_through_stop_and_restart(client: Client):
    cid = (await running_with_link(client))["container_id"]
    await client.call("stop_container", {"container_id": cid})
    status = await wait_link(client, cid, False)
    assert status["state"] == "stopped"
    down = await client.call("send_message", {"container_id": cid, "message": {"command": "ping"}})
    assert down["error_type"] == "socket_connection_error" and down["details"]["operation"] == "send_message"
    await client.call("start_container", {"container_id": cid})
    await wait_link(client, cid, True)
    await ping(client, cid)
    await client.call("restart_container", {"container_id": cid})
    await wait_link(client, cid, True)
    await ping(client, cid)
    await client.call("delete_container", {"container_id": cid})


async def test_host_process_can_use_socket_path_and_garbage_resets_only_that_link(client: Client):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("host"), "command": ["sleep", "3600"]})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})

    def talk(frames: list[bytes]) -> None:
        with pysocket.socket(pysocket.AF_UNIX) as s:
            s.connect(created["socket_path"])
            for frame in frames:
                s.sendall(frame)

    body = json.dumps({"command": "hello-from-host"}).encode()
    await asyncio.to_thread(talk, [struct.pack(">I", len(body)) + body])
    await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "hello-from-host")
    await asyncio.to_thread(talk, [struct.pack(">I", 5) + b"nope!", struct.pack(">I", 1 << 30)])
    await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "container_error")
    assert (await client.call("list_containers", {}))["count"] >= 1  # the manager is still serving
    await asyncio.to_thread(talk, [struct.pack(">I", len(body)) + body])
    await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "hello-from-host", count=2)
    await client.call("delete_container", {"container_id": cid})


async def test_a_container_that_never_reads_gets_socket_timeout_error(client: Client):
    reader_that_never_reads = "import socket,time; s=socket.socket(socket.AF_UNIX); s.connect('/run/flow/link.sock'); time.sleep(3600)"
    cid = (await running_with_link(client, command=["python3", "-c", reader_that_never_reads]))["container_id"]
    big = {"command": "fill", "data": "x" * 900_000}
    errors = []
    for _ in range(12):  # the kernel buffers a little; then the write cannot finish
        reply = await client.call("send_message", {"container_id": cid, "message": big})
        if reply.get("error"):
            errors.append(reply["error_type"])
            break
    assert errors == ["socket_timeout_error"]
    other = await running_with_link(client)  # other links are unaffected
    await ping(client, other["container_id"])
    for c in (cid, other["container_id"]):
        await client.call("delete_container", {"container_id": c})


async def test_javascript_client(server):
    assert shutil.which("node"), "node is needed for the JavaScript client test (see README)"
    if not (JS_DIR / "node_modules" / "socket.io-client").exists():
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS_DIR / "link_client.mjs"), server.url, unique_name("js"), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["ok"], result
    assert result["seen"]["connected"]["message"]
    assert result["created"]["status"] == "created" and result["sent"]["status"] == "sent"
    assert result["status"]["socket_connected"] is True
    assert any(m["message"]["command"] == "pong" for m in result["seen"]["received"])
    assert result["bad"]["error_type"] == "validation_error"
    assert result["deleted"]["status"] == "deleted"
    assert [s["new_state"] for s in result["seen"]["statusChanged"] if s["container_id"] == result["created"]["container_id"]][:1] == ["running"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_flooding_container_stalls_neither_the_manager_nor_other_links(server, client: Client):
    flood = (
        "import socket,struct,json; s=socket.socket(socket.AF_UNIX); s.connect('/run/flow/link.sock'); "
        "b=json.dumps({'command':'flood','data':'x'*200}).encode(); f=struct.pack('>I',len(b))+b; "
        "[s.sendall(f*100) for _ in iter(int, 1)]"
    )
    quiet = await running_with_link(client)
    rss_before = rss_mb(server.proc.pid)
    flooder = await running_with_link(client, command=["python3", "-c", flood])
    await client.wait_for("message_received", flooder["container_id"], count=500, timeout=15)
    latencies = []
    for _ in range(5):
        started = asyncio.get_running_loop().time()
        await ping(client, quiet["container_id"])
        latencies.append(asyncio.get_running_loop().time() - started)
        started = asyncio.get_running_loop().time()
        assert (await client.call("list_containers", {}))["count"] >= 2
        latencies.append(asyncio.get_running_loop().time() - started)
    # Alone this is ~0.1 s; inside the full suite on a busy 2-core machine a single 1.1 s was seen (the flood
    # still costs the loop CPU at --link-rate-limit 2000/s): the median must stay low, no answer may stall.
    assert sorted(latencies)[len(latencies) // 2] < 0.75 and max(latencies) < 2.0, latencies
    assert rss_mb(server.proc.pid) - rss_before < 100, "backpressure keeps the manager's memory bounded"
    for c in (flooder, quiet):
        await client.call("delete_container", {"container_id": c["container_id"]})
