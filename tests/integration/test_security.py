"""Security against the real server and Docker: the token, origins, the start-up refusal, the request
policy, the limits, and what the logs keep quiet about."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiodocker
import pytest
import socketio

from controller import labels
from tests.integration.harness import Client, Server, expect_quiet, unique_name, wait_until

TOKEN = "test-token-" + "k" * 24
JS_DIR = Path(__file__).parent.parent / "js"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("roots")
    (base / "allowed" / "data").mkdir(parents=True)
    (base / "outside").mkdir()
    (base / "allowed" / "escape").symlink_to(base / "outside")
    return base


@pytest.fixture(scope="module")
def secure(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[Server]:
    """A manager with a token and a widened but still bounded policy."""
    srv = Server(
        tmp_path_factory.mktemp("secure"),
        "--token",
        TOKEN,
        "--cors-origins",
        "https://ui.example",
        "--volume-roots",
        str(roots / "allowed"),
        "--allowed-images",
        "flow:*",
        "--host-port-range",
        "20000-29999",
        "--allow-polling",  # test_polling_clients_get_the_same_answer_to_an_oversized_request
        "--max-memory-limit",
        str(256 << 20),
        "--max-pids-limit",
        "64",
        "--default-memory-limit",
        str(128 << 20),
        "--default-pids-limit",
        "32",
        "--max-containers",
        "2",
        "--max-request-bytes",
        "65536",
        "--client-rate-limit",
        "50",
        "--client-rate-burst",
        "20",
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def authed(secure: Server) -> AsyncIterator[Client]:
    """A client of the secure manager, which starts every test with no containers (its limit is 2)."""
    c = await Client().connect(secure.url, auth={"token": TOKEN})
    await delete_all(c)
    yield c
    await delete_all(c)
    await c.close()


async def delete_all(c: Client) -> None:
    for entry in (await c.call("list_containers", {}))["containers"]:
        await c.call("delete_container", {"container_id": entry["id"]})


async def managed(docker: aiodocker.Docker, server: Server) -> list[str]:
    found = await docker.containers.list(all=True, filters=labels.managed_filter(server.instance))
    return [c.id for c in found]


def assert_one_validation_error(client: Client, reply: dict, field: str, errors_before: int) -> None:
    assert reply.get("error_type") == "validation_error", reply
    assert reply["details"]["field"] == field, reply
    assert len(client.of("error")) == errors_before + 1


# -- who may connect -----------------------------------------------------------------------------------
async def test_a_missing_or_wrong_token_is_refused_at_connect(secure: Server):
    for auth in (None, {}, {"token": "wrong"}, {"token": TOKEN[:-1]}, {"token": 7}, "not-a-dict"):
        refused = socketio.AsyncClient(reconnection=False)
        reasons: list = []
        refused.on("connect_error", lambda data, reasons=reasons: reasons.append(data))
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(secure.url, transports=["websocket"], auth=auth, wait_timeout=5)
        assert reasons and "authentication" in str(reasons[0]), reasons
        assert not refused.connected
    c = await Client().connect(secure.url, auth={"token": TOKEN})
    try:
        assert (await c.wait_for("connected"))["message"]
        assert (await c.call("list_containers", {}))["count"] == 0
    finally:
        await c.close()
    assert TOKEN not in secure.log() and "refused a connection" in secure.log()


def run_js(url: str, token: str | None) -> dict:
    assert shutil.which("node"), "node is needed for the JavaScript client test (see README)"
    if not (JS_DIR / "node_modules" / "socket.io-client").exists():
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)
    args = ["node", str(JS_DIR / "link_client.mjs"), url, unique_name("js")] + ([token] if token else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=90).stdout
    return json.loads(out.strip().splitlines()[-1])


async def test_the_javascript_client_sends_the_token(secure: Server, authed: Client):
    result = await asyncio.to_thread(run_js, secure.url, TOKEN)
    assert result["ok"], result
    assert result["sent"]["status"] == "sent" and result["deleted"]["status"] == "deleted"
    refused = await asyncio.to_thread(run_js, secure.url, "wrong-token")
    assert not refused["ok"] and "authentication failed" in refused["why"]


async def test_a_client_cannot_call_the_connection_handlers(secure: Server, authed: Client):
    for event, args in (("disconnect", None), ("connect", {"HTTP_HOST": "localhost"})):
        reply = await authed.call(event, args)
        assert reply["error_type"] == "validation_error" and reply["details"]["field"] == "(event)", reply
        assert reply["details"]["operation"] == event
    other = await Client().connect(secure.url, auth={"token": TOKEN})
    try:  # still a listener: "disconnect" did not drop it from the broadcasts
        created = await other.call("create_container", {"image": "flow:latest", "name": unique_name("bcast")})
        await authed.wait_for("activity_log", created["container_id"], timeout=10)
        await other.call("delete_container", {"container_id": created["container_id"]})
    finally:
        await other.close()


async def connects(url: str, **kwargs: object) -> bool:
    probe = socketio.AsyncClient(reconnection=False)
    try:
        await probe.connect(url, transports=["websocket"], wait_timeout=5, **kwargs)
    except socketio.exceptions.ConnectionError:
        return False
    await probe.disconnect()
    return True


async def test_cross_origin_pages_are_refused_unless_allowed(server: Server, secure: Server):
    own = {"Origin": server.url}
    assert await connects(server.url, headers=own)
    assert not await connects(server.url, headers={"Origin": "https://evil.example"})  # default: same origin only
    auth = {"token": TOKEN}
    assert await connects(secure.url, auth=auth, headers={"Origin": "https://ui.example"})
    assert not await connects(secure.url, auth=auth, headers={"Origin": "https://evil.example"})


async def test_without_a_token_a_rebound_host_name_is_refused(server: Server):
    assert not await connects(server.url, headers={"Host": f"rebind.evil.example:{server.port}"})
    assert await connects(server.url, headers={"Host": f"localhost:{server.port}"})


def test_a_public_address_without_a_token_refuses_to_start(workdir: Path):
    public = Server(workdir, "--host", "0.0.0.0")
    with pytest.raises(RuntimeError, match="refusing to listen on 0.0.0.0 without a token"):
        public.start()
    assert public.proc is not None and public.proc.returncode == 2
    for extra, env in ((("--insecure",), {}), ((), {"FLOW_MANAGER_TOKEN": TOKEN})):
        started = Server(workdir, "--host", "0.0.0.0", *extra)
        started.env.update(env)
        started.start()
        try:
            assert started.proc is not None and started.proc.poll() is None
        finally:
            started.stop()


# -- what may be asked for -------------------------------------------------------------------------
async def test_default_policy_refuses_host_paths_and_code_outside_roots(client: Client, docker: aiodocker.Docker, server: Server, tmp_path: Path):
    name = unique_name("pol")
    cases = [
        ({"volumes": {str(tmp_path): "/data"}}, f"volumes.{tmp_path}"),
        ({"volumes": {"/var/run/docker.sock": "/var/run/docker.sock"}}, "volumes./var/run/docker.sock"),
        ({"volumes": {"/": "/host"}}, "volumes./"),
        ({"code_path": "/etc"}, "code_path"),
        ({"code_path": server.socket_dir}, "code_path"),  # inside the code root, but the manager's own
        ({"code_path": str(server.workdir / "state")}, "code_path"),
        ({"ports": {"8080": 80}}, "ports.8080"),
        ({"ports": {"8080": server.port}}, "ports.8080"),
        ({"memory_limit": 64 << 30}, "memory_limit"),
        ({"pids_limit": 100_000}, "pids_limit"),
    ]
    for extra, field in cases:
        before = len(client.of("error"))
        reply = await client.call("create_container", {"image": "flow:latest", "name": name, **extra})
        assert_one_validation_error(client, reply, field, before)
    assert not await docker.containers.list(all=True, filters={"name": [name]})
    assert all(c["name"] != name for c in (await client.call("list_containers", {}))["containers"])


async def test_an_update_cannot_read_code_outside_the_roots(client: Client, docker: aiodocker.Docker):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("upd")})
    cid = created["container_id"]
    for path in ("/etc", "/root", "/proc/self"):
        before = len(client.of("error"))
        reply = await client.call("update_container", {"container_id": cid, "code_path": path})
        assert_one_validation_error(client, reply, "code_path", before)
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["code_revision"] is None and status["docker_id"] == created["docker_id"]
    await client.call("delete_container", {"container_id": cid})


async def test_containers_run_unprivileged_with_default_limits(client: Client, docker: aiodocker.Docker):
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("priv")})
    host = (await docker.containers.container(created["docker_id"]).show())["HostConfig"]
    assert host["Privileged"] is False and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["NetworkMode"] in ("default", "bridge") and host["PidMode"] == "" and host["IpcMode"] == "private"
    assert host["UTSMode"] == "" and host["UsernsMode"] == "" and not host["Devices"]
    kept = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"}
    assert host["CapDrop"] == ["ALL"] and {c.removeprefix("CAP_") for c in host["CapAdd"]} == kept, host["CapAdd"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (1 << 30, 1 << 30, 512)
    await client.call("delete_container", {"container_id": created["container_id"]})


async def test_a_widened_policy_allows_what_it_names_and_nothing_more(authed: Client, docker: aiodocker.Docker, secure: Server, roots: Path):
    refusals = [
        ({"image": "alpine:3"}, "image"),
        ({"volumes": {str(roots / "allowed" / "escape"): "/data"}}, f"volumes.{roots / 'allowed' / 'escape'}"),
        ({"volumes": {str(roots / "outside"): "/data"}}, f"volumes.{roots / 'outside'}"),
        ({"volumes": {str(roots / "allowed" / "data"): "/run/flow"}}, f"volumes.{roots / 'allowed' / 'data'}"),
        ({"ports": {"80": 30000}}, "ports.80"),
        ({"memory_limit": (256 << 20) + 1}, "memory_limit"),
        ({"pids_limit": 65}, "pids_limit"),
    ]
    for extra, field in refusals:
        before = len(authed.of("error"))
        name = unique_name("wide")
        reply = await authed.call("create_container", {"image": "flow:latest", "name": name, **extra})
        assert_one_validation_error(authed, reply, field, before)
        assert not await docker.containers.list(all=True, filters={"name": [name]})

    (roots / "allowed" / "data" / "hello.txt").write_text("from the host")
    (roots / "allowed" / "link-to-data").symlink_to(roots / "allowed" / "data")
    created = await authed.call(
        "create_container",
        {
            "image": "flow:latest",
            "name": unique_name("wide"),
            "volumes": {str(roots / "allowed" / "link-to-data"): "/data"},
            "ports": {"8080": 20000 + os.getpid() % 9000},
            "pids_limit": 16,
        },
    )
    assert created["status"] == "created", created
    info = await docker.containers.container(created["docker_id"]).show()
    assert {(m["Source"], m["Destination"]) for m in info["Mounts"]} >= {(str(roots / "allowed" / "data"), "/data")}
    assert (info["HostConfig"]["Memory"], info["HostConfig"]["PidsLimit"]) == (128 << 20, 16)
    await authed.call("delete_container", {"container_id": created["container_id"]})


# -- limits ------------------------------------------------------------------------------------------
async def test_the_container_count_is_capped(authed: Client, docker: aiodocker.Docker, secure: Server):
    first, second = [await authed.call("create_container", {"image": "flow:latest", "name": unique_name("cap")}) for _ in range(2)]
    name = unique_name("cap")
    third = await authed.call("create_container", {"image": "flow:latest", "name": name})
    assert third["error_type"] == "system_error" and third["details"]["limit"] == "max_containers", third
    assert "--max-containers" in third["message"] and third["details"]["max"] == 2
    assert not await docker.containers.list(all=True, filters={"name": [name]})
    assert len(await managed(docker, secure)) == 2
    await authed.call("delete_container", {"container_id": first["container_id"]})
    again = await authed.call("create_container", {"image": "flow:latest", "name": name})
    assert again["status"] == "created", again
    for c in (second, again):
        await authed.call("delete_container", {"container_id": c["container_id"]})


async def test_a_flooding_client_is_rate_limited_without_slowing_the_others(secure: Server, authed: Client):
    flooder = await Client().connect(secure.url, auth={"token": TOKEN})
    try:
        started = time.monotonic()
        for _ in range(1000):  # fire and forget, as fast as the client can
            await flooder.sio.emit("list_containers", {})
        latencies = []
        while len(flooder.of("container_list")) + len(flooder.of("error")) < 1000:
            t0 = time.monotonic()
            assert "containers" in await authed.call("list_containers", {}, timeout=5)
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(0.02)  # the well-behaved client stays under its own limit
            assert time.monotonic() - started < 30
        elapsed = time.monotonic() - started
        await expect_quiet(flooder, {"container_list": None, "error": None}, 0.3, what="one answer per request: no duplicate or late extra answer")
        served, refused = len(flooder.of("container_list")), flooder.of("error")
        assert served + len(refused) == 1000  # one answer each, no more
        assert 20 <= served <= 20 + 50 * elapsed + 5, (served, elapsed)  # the burst, then 50/s
        assert {e["error_type"] for e in refused} == {"system_error"}
        assert {e["details"]["limit"] for e in refused} == {"client_rate_limit"}
        assert all(0 < e["details"]["retry_after"] <= 1 / 50 for e in refused)
        assert latencies and max(latencies) < 1.0, latencies
        print(f"\nrate limit: {served} served, {len(refused)} refused in {elapsed:.2f} s; other client max latency {max(latencies) * 1000:.1f} ms")
    finally:
        await flooder.close()


async def test_oversized_and_binary_requests_get_one_validation_error(authed: Client, secure: Server):
    big = {"container_id": "abc123def456", "message": {"command": "x", "data": "y" * 100_000}}  # > 65536 bytes
    before = len(authed.of("error"))
    reply = await authed.call("send_message", big)
    assert reply["error_type"] == "validation_error" and reply["details"]["field"] == "(request)", reply
    assert reply["details"]["operation"] == "send_message" and reply["details"]["limit"] == "max_request_bytes"
    assert len(authed.of("error")) == before + 1
    binary = await authed.call("send_message", {"container_id": "abc123def456", "message": {"data": b"\x00" * 10}})
    assert binary["error_type"] == "validation_error" and "binary" in binary["message"], binary
    assert (await authed.call("list_containers", {}))["count"] == 0  # the connection is fine

    # Past the transport ceiling (1 MiB here) the frame is not read at all: that connection closes.
    victim = await Client().connect(secure.url, auth={"token": TOKEN})
    closed = asyncio.Event()
    victim.sio.on("disconnect", lambda *a: closed.set())
    await victim.sio.emit("send_message", {"container_id": "x", "message": {"data": "z" * (2 << 20)}})
    await asyncio.wait_for(closed.wait(), 10)
    await victim.close()
    assert (await authed.call("list_containers", {}))["count"] == 0  # others are unaffected


def test_polling_clients_get_the_same_answer_to_an_oversized_request(secure: Server):
    base = f"{secure.url}/socket.io/?EIO=4&transport=polling"

    def http(url: str, body: str | None = None) -> str:
        request = urllib.request.Request(url, data=body.encode() if body is not None else None, method="POST" if body is not None else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    sid = json.loads(http(base)[1:])["sid"]
    session = f"{base}&sid={sid}"
    assert http(session, "40" + json.dumps({"token": TOKEN})).lower() == "ok"
    assert any(p.startswith("40{") for p in http(session).split("\x1e"))  # connected
    big = json.dumps(["send_message", {"container_id": "abc123def456", "message": {"data": "q" * 100_000}}])
    assert http(session, "427" + big).lower() == "ok"
    answers = []
    while not any(p.startswith("43") for p in answers):
        answers += http(session).split("\x1e")
    ack = json.loads(next(p for p in answers if p.startswith("437"))[3:])[0]
    assert ack["error_type"] == "validation_error" and ack["details"]["limit"] == "max_request_bytes"
    assert sum(p.startswith('42["error"') for p in answers) == 1


# -- logs ---------------------------------------------------------------------------------------------
async def test_logs_never_show_environment_values_or_message_contents(client: Client, server: Server):
    secret, content = f"env-secret-{unique_name()}", f"message-content-{unique_name()}"
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("quiet"), "environment": {"API_KEY": secret}})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    await wait_until(
        lambda: client.call("get_container_status", {"container_id": cid}),
        15,
        until=lambda s: s["socket_connected"] is True,
        what="the runtime's link connected",
    )
    await client.call("send_message", {"container_id": cid, "message": {"command": "echo", "data": content}})
    await client.wait_for("message_received", cid, lambda m: content in json.dumps(m))
    # failures that carry the values too
    await client.call("create_container", {"image": "flow:latest", "environment": {"BAD NAME": secret}})
    await client.call("send_message", {"container_id": cid, "message": {"command": "flow.x", "data": content}})
    too_big = await client.call("send_message", {"container_id": cid, "message": {"data": content * 70_000}})
    assert too_big["details"]["limit"] == "max_request_bytes"
    await client.call("stop_container", {"container_id": cid})
    await client.call("send_message", {"container_id": cid, "message": {"data": content}})
    await client.call("delete_container", {"container_id": cid})
    log = server.log_path.read_text(errors="replace")
    assert secret not in log and content not in log


async def test_secrets_at_rest_are_private(server: Server, client: Client):
    """The journal holds environment values; the link directory would let local users take links over."""
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("private")})
    await client.call("delete_container", {"container_id": created["container_id"]})
    state = server.workdir / "state" / server.instance
    assert state.stat().st_mode & 0o777 == 0o700
    assert (Path(server.socket_dir) / ".links").stat().st_mode & 0o777 == 0o700
