"""A container's link directory is no way into the host, and link setup leaves the host's files alone.

- A container racing the manager's socket setup (swapping link.sock for a symlink to a host file while
  the manager restarts and binds again) never gets a host file's mode changed.
- From inside, the link directory is read-only and device nodes cannot be made; the link still works.
- --socket-dir pointing at a shared directory (mode 1777) keeps its mode.
- A send that answers socket_timeout_error is never delivered later: the client may retry without duplicates.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from pathlib import Path

import aiodocker

from tests.integration.harness import Client, Server, unique_name
from tests.integration.test_links import ping, running_with_link

# Watches link.sock; whenever a new socket appears there, swaps it for a symlink to argv[1] (a host path).
RACER = """
import os, stat, sys, time
target, link, evil = sys.argv[1], '/run/flow/link.sock', '/run/flow/.evil'
seen = None
while True:
    try:
        st = os.lstat(link)
    except OSError:
        continue
    if stat.S_ISSOCK(st.st_mode) and (st.st_ino, st.st_ctime_ns) != seen:  # inode numbers are reused
        seen = (st.st_ino, st.st_ctime_ns)
        try:
            os.symlink(target, evil)
        except FileExistsError:
            pass
        except OSError:
            time.sleep(0.001)  # a read-only link directory: nothing to race with
            continue
        try:
            os.rename(evil, link)
        except OSError:
            pass
"""


def host_link(server: Server, cid: str) -> Path:
    return Path(server.socket_dir) / ".links" / cid / "link.sock"


def identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` names now (inode numbers alone are reused at once)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns


async def test_a_container_racing_link_setup_cannot_chmod_host_files(docker: aiodocker.Docker, tmp_path: Path):
    """Issue 16, hole 2: the manager's chmod of link.sock followed a symlink the container swapped in."""
    server = Server(tmp_path)
    server.start()
    targets = []
    for i in range(3):
        target = tmp_path / f"secret-{i}"
        target.write_text("host secret\n")
        target.chmod(0o600)
        targets.append(target)
    cids: list[str] = []
    try:
        client = await Client().connect(server.url)
        for target in targets:
            created = await client.call(
                "create_container", {"image": "flow:latest", "name": unique_name("racer"), "command": ["python3", "-c", RACER, str(target)]}
            )
            assert created.get("status") == "created", created
            cids.append(created["container_id"])
            started = await client.call("start_container", {"container_id": created["container_id"]})
            assert started.get("status") == "running", started
        await client.close()
        for restart in range(10):
            before = {cid: identity(host_link(server, cid)) for cid in cids}
            server.stop()
            server.start()
            deadline = asyncio.get_running_loop().time() + 30
            while any(identity(host_link(server, cid)) in (None, before[cid]) for cid in cids):  # bound again
                assert asyncio.get_running_loop().time() < deadline, f"restart {restart}: links not set up again"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the racers' window: the chmod that followed the bind
            modes = [stat.S_IMODE(os.stat(t).st_mode) for t in targets]
            assert modes == [0o600] * 3, f"restart {restart}: a container changed a host file's mode: {modes}"
    finally:
        try:
            client = await Client().connect(server.url)
            for cid in cids:
                await client.call("delete_container", {"container_id": cid})
            await client.close()
        finally:
            server.stop()


def docker_exec(name: str, code: str) -> dict:
    done = subprocess.run(["docker", "exec", name, "python3", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


INSIDE = """
import errno, json, os, stat
def attempt(f):
    try:
        f(); return 'ok'
    except OSError as exc:
        return errno.errorcode[exc.errno]
def write():
    with open('/run/flow/fill', 'wb') as out: out.write(b'x' * (1 << 20))
caps = {k: v.strip() for k, v in (l.split(':', 1) for l in open('/proc/self/status')) if k.startswith('Cap')}
print(json.dumps({
    'write': attempt(write),
    'symlink': attempt(lambda: os.symlink('/etc/shadow', '/run/flow/shadow')),
    'mkdir': attempt(lambda: os.mkdir('/run/flow/d')),
    'remove_socket': attempt(lambda: os.unlink('/run/flow/link.sock')),
    'mknod_block': attempt(lambda: os.mknod('/tmp/blk', 0o600 | stat.S_IFBLK, os.makedev(8, 0))),
    'mknod_char': attempt(lambda: os.mknod('/tmp/chr', 0o600 | stat.S_IFCHR, os.makedev(1, 3))),
    'caps': caps}))
"""

# CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, NET_BIND_SERVICE 10
KEPT_CAPABILITIES = sum(1 << bit for bit in (0, 1, 3, 4, 5, 6, 7, 10))


async def test_the_link_directory_is_read_only_inside_and_devices_cannot_be_made(server: Server, client: Client, docker: aiodocker.Docker):
    created = await running_with_link(client)
    cid = created["container_id"]
    try:
        seen = await asyncio.to_thread(docker_exec, created["name"], INSIDE)
        assert {k: v for k, v in seen.items() if k != "caps"} == {
            "write": "EROFS",
            "symlink": "EROFS",
            "mkdir": "EROFS",
            "remove_socket": "EROFS",
            "mknod_block": "EPERM",
            "mknod_char": "EPERM",
        }, seen
        assert int(seen["caps"]["CapBnd"], 16) == KEPT_CAPABILITIES, seen["caps"]
        assert not any(p.name != "link.sock" for p in host_link(server, cid).parent.iterdir())
        mounts = (await docker.containers.container(created["docker_id"]).show())["Mounts"]
        assert [(m["Destination"], m["RW"]) for m in mounts] == [("/run/flow", False)]
        await ping(client, cid)  # connect() works on a read-only mount: the link still round-trips
    finally:
        await client.call("delete_container", {"container_id": cid})


async def test_a_shared_socket_dir_keeps_its_mode(docker: aiodocker.Docker, tmp_path: Path):
    """Issue 11, bug 3: link setup chmodded --socket-dir itself to 0755 (a sticky /tmp lost 1777)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    server = Server(tmp_path, "--socket-dir", str(shared))
    server.socket_dir = str(shared)
    server.start()
    client = Client()
    try:
        await client.connect(server.url)
        created = await running_with_link(client)
        await ping(client, created["container_id"])
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
        links = os.lstat(shared / ".links")
        assert stat.S_ISDIR(links.st_mode) and stat.S_IMODE(links.st_mode) == 0o700
        await client.call("delete_container", {"container_id": created["container_id"]})
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    finally:
        try:
            await client.close()
        finally:
            server.stop()


# Connects and never reads until /tmp/go exists; then reads what the manager's writes left in its socket
# (until the link ends, at most 4 s: the manager's pings keep an open link busy), and reports over a new
# connection which numbered messages arrived whole.
SLOW_READER = r"""
import json, os, socket, struct, time
def dial():
    s = socket.socket(socket.AF_UNIX); s.connect('/run/flow/link.sock'); return s
def frame(obj):
    b = json.dumps(obj).encode(); return struct.pack('>I', len(b)) + b
s = dial()
s.sendall(frame({'command': 'hello'}))
while not os.path.exists('/tmp/go'):
    time.sleep(0.05)
deadline = time.monotonic() + 4
buf, ended = b'', 'eof'
while True:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        chunk = s.recv(1 << 20)
    except socket.timeout:
        ended = 'still open'; break
    except OSError:
        ended = 'reset'; break
    if not chunk:
        break
    buf += chunk
seen = []
while len(buf) >= 4:
    (n,) = struct.unpack('>I', buf[:4])
    if len(buf) < 4 + n:
        break
    message = json.loads(buf[4:4 + n]); buf = buf[4 + n:]
    if message.get('command') == 'n':
        seen.append(message['data']['i'])
t = dial()
t.sendall(frame({'command': 'report', 'data': {'seen': seen, 'ended': ended}}))
time.sleep(3600)
"""


async def test_a_send_that_timed_out_is_never_delivered_later(client: Client):
    """Issue 11: the frame of a send answered socket_timeout_error stayed buffered and arrived later, so a
    client that retried delivered it twice."""
    created = await running_with_link(client, command=["python3", "-c", SLOW_READER])
    cid = created["container_id"]
    try:
        await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "hello")
        answers = []
        for i in range(40):  # the socket's buffer takes a few; then a write cannot finish within --send-timeout
            reply = await client.call("send_message", {"container_id": cid, "message": {"command": "n", "data": {"i": i, "pad": "x" * 60_000}}})
            answers.append(reply)
            if reply.get("error"):
                break
        failed = answers[-1]
        assert failed.get("error_type") == "socket_timeout_error", answers[-1]
        assert failed["details"]["delivery"] == "not_delivered" and failed["details"]["link_reset"] is True, failed
        sent = [i for i, a in enumerate(answers) if a.get("status") == "sent"]
        assert sent == list(range(len(answers) - 1)) and sent, "the socket's buffer took some before the timeout"

        await asyncio.to_thread(subprocess.run, ["docker", "exec", created["name"], "touch", "/tmp/go"], check=True)
        report = await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "report", timeout=20)
        assert report["message"]["data"] == {"seen": sent, "ended": "eof"}, (
            "every message answered 'sent' arrives, the one answered socket_timeout_error never does"
        )
        retry = await client.call("send_message", {"container_id": cid, "message": {"command": "n", "data": {"i": 99}}})
        assert retry.get("status") == "sent", retry  # the reader dialled again: a retry goes through once
    finally:
        await client.call("delete_container", {"container_id": cid})
