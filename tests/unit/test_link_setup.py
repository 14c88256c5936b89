"""Link setup on the host: what the manager creates, what it refuses, and what it never touches.

The link directory of a container created by an older manager was mounted writable, so these tests plant
symlinks and directories in it as such a container could, and race the manager's setup from another process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.adapters.links import LinkManager


def record(cid: str = "0123456789ab", name: str = "flow") -> SimpleNamespace:
    return SimpleNamespace(id=cid, spec=SimpleNamespace(name=name))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def set_up(socket_dir: Path, cid: str = "0123456789ab") -> LinkManager:
    manager = LinkManager(str(socket_dir), sink=None, ping_interval=0)  # type: ignore[arg-type]
    await manager.ensure(record(cid))
    return manager


async def test_modes_of_what_the_manager_creates_and_of_what_it_does_not(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    manager = await set_up(shared)
    try:
        assert mode(shared) == 0o1777, "the socket directory is not the manager's to change"
        assert mode(shared / ".links") == 0o700 and mode(shared / ".links" / "0123456789ab") == 0o755
        link = shared / ".links" / "0123456789ab" / "link.sock"
        assert stat.S_ISSOCK(os.lstat(link).st_mode) and mode(link) == 0o666
        assert sorted(os.listdir(shared / ".links")) == ["0123456789ab"], "nothing staged is left behind"
        assert os.readlink(shared / "flow.sock") == ".links/0123456789ab/link.sock"
        with socket.socket(socket.AF_UNIX) as client:  # listening as soon as it is in place
            await asyncio.to_thread(client.connect, str(shared / "flow.sock"))
    finally:
        await manager.close()


async def test_a_links_directory_that_is_a_symlink_is_refused(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    (sockets / ".links").symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="not a directory of its own"):
        await set_up(sockets)
    assert mode(elsewhere) == 0o755 and not os.listdir(elsewhere)


async def test_an_existing_links_directory_too_open_is_closed(tmp_path: Path):
    (tmp_path / ".links").mkdir()
    (tmp_path / ".links").chmod(0o777)
    manager = await set_up(tmp_path)
    await manager.close()
    assert mode(tmp_path / ".links") == 0o700


@pytest.mark.parametrize("planted", ["symlink", "directory"])
async def test_whatever_a_container_planted_as_link_sock_is_replaced_never_followed(tmp_path: Path, planted: str):
    secret = tmp_path / "secret"
    secret.write_text("host secret\n")
    secret.chmod(0o600)
    link_dir = tmp_path / "sockets" / ".links" / "0123456789ab"
    link_dir.mkdir(parents=True)
    if planted == "symlink":
        (link_dir / "link.sock").symlink_to(secret)
    else:
        (link_dir / "link.sock").mkdir()
        (link_dir / "link.sock" / "to-secret").symlink_to(secret)
    manager = await set_up(tmp_path / "sockets")
    await manager.close()
    assert stat.S_ISSOCK(os.lstat(link_dir / "link.sock").st_mode)
    assert mode(secret) == 0o600 and secret.read_text() == "host secret\n"


RACER = """
import os, stat, sys
target, link, evil = sys.argv[1], sys.argv[2], sys.argv[2] + '.evil'
seen = None
print('racing', flush=True)
while True:
    try:
        st = os.lstat(link)
    except OSError:
        continue
    if stat.S_ISSOCK(st.st_mode) and (st.st_ino, st.st_ctime_ns) != seen:
        seen = (st.st_ino, st.st_ctime_ns)
        try:
            os.symlink(target, evil)
        except FileExistsError:
            pass
        os.rename(evil, link)
"""


async def test_a_racer_in_a_writable_link_directory_never_gets_a_host_file_chmodded(tmp_path: Path):
    """Issue 16, hole 2, without the read-only mount: a process swapping link.sock for a symlink to a host file
    as soon as a new socket appears, through 300 manager restarts."""
    secret = tmp_path / "secret"
    secret.write_text("host secret\n")
    secret.chmod(0o600)
    sockets = tmp_path / "sockets"
    link = sockets / ".links" / "0123456789ab" / "link.sock"
    link.parent.mkdir(parents=True)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(secret), str(link)], stdout=subprocess.PIPE) for _ in range(2)]
    for racer in racers:
        assert racer.stdout is not None and racer.stdout.readline() == b"racing\n"
    failed: list[str] = []
    try:
        for restart in range(300):
            try:
                manager = await set_up(sockets)
                await manager.close()
            except OSError as exc:
                failed.append(str(exc))
            assert mode(secret) == 0o600, f"restart {restart}: the manager chmodded a host file through a symlink"
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert secret.read_text() == "host secret\n"
    assert not failed, f"the racer made {len(failed)} setups fail, e.g. {failed[0]}"


def test_a_socket_dir_another_user_could_move_is_refused(tmp_path: Path):
    """Docker resolves the link mount by path at every start: no directory on the way may be another user's
    or writable by others (unless sticky), else that user could rename it and plant their own .links."""
    from controller.adapters.links.setup import untrusted

    os.chmod(tmp_path, 0o755)
    assert untrusted(str(tmp_path)) is None
    sticky = tmp_path / "shared"
    sticky.mkdir(mode=0o1777)
    os.chmod(sticky, 0o1777)
    assert untrusted(str(sticky)) is None, "a sticky directory such as /tmp is fine"
    theirs = sticky / "kawaflow"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # another user made it first (the default lives under /tmp)
    assert "uid 65534" in (untrusted(str(theirs / "sockets")) or "")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    assert "writable by other users" in (untrusted(str(open_dir / "sockets")) or "")
    link = tmp_path / "via-link"
    link.symlink_to(theirs)
    assert "uid 65534" in (untrusted(str(link)) or ""), "a symlink's target is checked too"
    with pytest.raises(PermissionError, match="refusing --socket-dir"):
        from controller.adapters.links.setup import prepare

        prepare(theirs / "sockets", "0123456789ab", theirs / "sockets" / "x.sock")
