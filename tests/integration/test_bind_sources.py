"""Bind sources against the real engine: a volume is bound only while its path still resolves, without
symlinks, to what the policy admitted (checked before every create and every start, crash restarts
included), and no managed container's bind source lies inside or contains another's (issue 16, hole 1)."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import aiodocker
import pytest

from tests.integration.harness import Client, Server, unique_name

REASON = "bind_source_changed"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("volume-root")


@pytest.fixture(scope="module")
def guarded(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory, root: Path) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("binds"), "--volume-roots", str(root))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def vc(guarded: Server) -> AsyncIterator[Client]:
    """A client of the guarded manager; every container it made is deleted afterwards (their bind
    sources would otherwise refuse the next test's nested paths)."""
    c = await Client().connect(guarded.url)
    yield c
    for entry in (await c.call("list_containers", {}))["containers"]:
        await c.call("delete_container", {"container_id": entry["id"]})
    await c.close()


def swap_for_symlink(path: Path, target: str) -> Path:
    """Replace a directory by a symlink, as a host user (or a container owning the parent) could."""
    kept = path.with_name(path.name + ".orig")
    path.rename(kept)
    path.symlink_to(target)
    return kept


def restore(path: Path, kept: Path) -> None:
    path.unlink()
    kept.rename(path)


async def running(docker: aiodocker.Docker, docker_id: str) -> bool:
    return bool((await docker.containers.container(docker_id).show())["State"]["Running"])


async def exec_output(docker: aiodocker.Docker, docker_id: str, *cmd: str) -> str:
    execution = await docker.containers.container(docker_id).exec(list(cmd), stdout=True, stderr=True)
    async with execution.start(detach=False) as stream:
        chunks = []
        while (message := await stream.read_out()) is not None:
            chunks.append(message.data.decode(errors="replace"))
    return "".join(chunks)


def refused_for_the_bind_source(payload: dict, host_path: Path) -> bool:
    details = payload.get("details") or {}
    return details.get("reason") == REASON and details.get("host_path") == str(host_path)


# -- (a) the reproduction from the issue -------------------------------------------------------------
async def test_a_request_whose_bind_sources_nest_is_refused(vc: Client, docker: aiodocker.Docker, root: Path):
    """The issue's reproduction: with R/a -> /a and R/a/b -> /b, the container replaces /a/b by a
    symlink to / and exits; the crash restart bound the host's root at /b. Nested sources are refused now."""
    (root / "a" / "b").mkdir(parents=True)
    name = unique_name("nest")
    before = len(vc.of("error"))
    reply = await vc.call("create_container", {"image": "flow:latest", "name": name, "volumes": {str(root / "a"): "/a", str(root / "a" / "b"): "/b"}})
    assert reply.get("error_type") == "validation_error", reply
    assert reply["details"]["field"] == f"volumes.{root / 'a' / 'b'}", reply
    assert "inside" in reply["message"] and str(root / "a") in reply["message"], reply
    assert len(vc.of("error")) == before + 1
    assert not await docker.containers.list(all=True, filters={"name": [name]})


async def test_a_crash_restart_never_binds_a_source_swapped_for_a_symlink(vc: Client, docker: aiodocker.Docker, root: Path):
    """The start-time half of the reproduction: the source is swapped while the container runs (here by
    the host; a container owning the parent could do the same before nesting was refused), then the
    container exits. The manager's restart must be refused and reported, never bind the host's root."""
    source = root / "crash"
    source.mkdir()
    created = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("crash"), "volumes": {str(source): "/v"}})
    cid, docker_id = created["container_id"], created["docker_id"]
    assert (await vc.call("start_container", {"container_id": cid}))["status"] == "running"
    kept = swap_for_symlink(source, "/")
    try:
        await docker.containers.container(docker_id).kill(signal="SIGKILL")
        await vc.wait_for("container_crashed", cid)
        refused = await vc.wait_for(
            "activity_log",
            cid,
            lambda a: (
                a["activity_type"] == "container_error"
                or (a["activity_type"] == "status_change" and a["details"] == {"old_state": "stopped", "new_state": "running"})
            ),
            timeout=20,
        )
        if await running(docker, docker_id):  # before the fix: say what the restart exposed
            seen = await exec_output(docker, docker_id, "cat", "/v/etc/hostname")
            pytest.fail(f"restarted with /v/etc/hostname = {seen!r} (host: {open('/etc/hostname').read()!r})")
        assert refused_for_the_bind_source(refused, source), refused
        error = await vc.wait_for("error", None, lambda e: refused_for_the_bind_source(e, source))
        assert error["error_type"] == "validation_error" and error["details"]["container_id"] == cid, error
        status = await vc.call("get_container_status", {"container_id": cid})
        assert status["state"] == "stopped" and status["last_error"]["reason"] == REASON, status
        assert not await running(docker, docker_id)
    finally:
        restore(source, kept)
    again = await vc.call("start_container", {"container_id": cid})  # the real directory is back: it runs
    assert again["status"] == "running", again
    assert (await vc.call("get_container_status", {"container_id": cid}))["last_error"] is None
    assert (await exec_output(docker, docker_id, "ls", "/v")).strip() == ""


# -- (b) a host-side swap while stopped ----------------------------------------------------------------
async def test_a_start_or_restart_of_a_swapped_source_is_refused(vc: Client, docker: aiodocker.Docker, root: Path):
    source = root / "v"
    source.mkdir()
    (source / "mine.txt").write_text("the admitted directory")
    created = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("swap"), "volumes": {str(source): "/v"}})
    cid, docker_id = created["container_id"], created["docker_id"]
    assert (await vc.call("start_container", {"container_id": cid}))["status"] == "running"
    assert (await vc.call("stop_container", {"container_id": cid}))["status"] == "stopped"

    for target in ("/", "/etc", str(root)):  # the host, a forbidden place, and a place still inside the root
        kept = swap_for_symlink(source, target)
        try:
            before = len(vc.of("error"))
            reply = await vc.call("start_container", {"container_id": cid})
            assert reply.get("error_type") == "validation_error", reply
            assert refused_for_the_bind_source(reply, source), reply
            assert "symlink" in reply["message"], reply
            # the caller's `error` event (a broadcast one may come too: the reconciler can fail the start
            # before the handler's waiter is registered, which it reports to everyone)
            assert any(e["details"].get("retrying") is False and refused_for_the_bind_source(e, source) for e in vc.of("error")[before:]), vc.of(
                "error"
            )[before:]
            assert not await running(docker, docker_id)
            await vc.wait_for("activity_log", cid, lambda a: a["activity_type"] == "container_error" and a["details"].get("reason") == REASON)
        finally:
            restore(source, kept)
        # intent is still "running": the manager keeps trying and starts it once the directory is back
        await vc.wait_for(
            "status_changed",
            cid,
            lambda e: e["new_state"] == "running",
            count=len(vc.of("status_changed", cid, lambda e: e["new_state"] == "running")) + 1,
        )
        assert "the admitted directory" in await exec_output(docker, docker_id, "cat", "/v/mine.txt")
        assert (await vc.call("stop_container", {"container_id": cid}))["status"] == "stopped"

    # a restart refuses before it stops anything: the running container keeps its good mount
    assert (await vc.call("start_container", {"container_id": cid}))["status"] == "running"
    kept = swap_for_symlink(source, "/")
    try:
        reply = await vc.call("restart_container", {"container_id": cid})
        assert reply.get("error_type") == "validation_error" and refused_for_the_bind_source(reply, source), reply
        assert await running(docker, docker_id)
        assert "the admitted directory" in await exec_output(docker, docker_id, "cat", "/v/mine.txt")
    finally:
        restore(source, kept)


async def test_a_symlink_in_a_parent_of_the_source_is_refused_too(vc: Client, docker: aiodocker.Docker, root: Path):
    parent = root / "p"
    (parent / "data").mkdir(parents=True)
    elsewhere = root.parent / f"{root.name}-outside"
    (elsewhere / "data").mkdir(parents=True, exist_ok=True)
    created = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("parent"), "volumes": {str(parent / "data"): "/d"}})
    cid = created["container_id"]
    kept = swap_for_symlink(parent, str(elsewhere))  # every component counts, not only the last
    try:
        reply = await vc.call("start_container", {"container_id": cid})
        assert reply.get("error_type") == "validation_error", reply
        assert refused_for_the_bind_source(reply, parent / "data"), reply
        assert not await running(docker, created["docker_id"])
    finally:
        restore(parent, kept)


# -- (c) nesting across containers ------------------------------------------------------------------
async def test_a_bind_source_inside_or_around_another_containers_is_refused(vc: Client, docker: aiodocker.Docker, root: Path):
    (root / "c" / "inner").mkdir(parents=True)
    (root / "c-sibling").mkdir()
    first = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("outer"), "volumes": {str(root / "c"): "/c"}})
    assert first["status"] == "created", first
    for host in (root / "c" / "inner", root):  # inside the first one's source, and containing it
        name = unique_name("nested")
        reply = await vc.call("create_container", {"image": "flow:latest", "name": name, "volumes": {str(host): "/x"}})
        assert reply.get("error_type") == "validation_error", reply
        assert reply["details"]["field"] == f"volumes.{host}", reply
        assert first["container_id"] in reply["message"] or first["container_id"] in str(reply["details"]), reply
        assert not await docker.containers.list(all=True, filters={"name": [name]})
    # a sibling whose name merely starts the same, and the very same directory (shared: a container
    # cannot rename its own mount's root, so sharing it moves no bind source), are fine
    sharing = []
    for host in (root / "c-sibling", root / "c"):
        ok = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("ok"), "volumes": {str(host): "/x"}})
        assert ok["status"] == "created", ok
        sharing.append(ok["container_id"])
    # once every container binding R/c is gone, R/c/inner is free again
    for cid in (first["container_id"], sharing[1]):
        await vc.call("delete_container", {"container_id": cid})
    inner = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("freed"), "volumes": {str(root / "c" / "inner"): "/x"}})
    assert inner.get("status") == "created", inner


# -- names that look like ids ----------------------------------------------------------------------
async def test_a_name_that_looks_like_a_managed_id_is_refused(vc: Client, docker: aiodocker.Docker):
    other = await vc.call("create_container", {"image": "flow:latest", "name": unique_name("target")})
    reply = await vc.call("create_container", {"image": "flow:latest", "name": other["container_id"]})
    assert reply.get("error_type") == "validation_error" and reply["details"]["field"] == "name", reply
    resolved = await vc.call("get_container_status", {"container_id": other["container_id"]})
    assert resolved["name"] == other["name"]
    assert not await docker.containers.list(all=True, filters={"name": [f"^/{other['container_id']}$"]})
