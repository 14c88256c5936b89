"""Code snapshots and code updates against the real server and engine: a snapshot cannot be redirected
outside the code roots, its memory is bounded, archives go when their last record goes, and an update
replaces the whole code tree of a running flow."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import aiodocker
import pytest

from flow_manager.image import ensure_flow_image
from tests.integration.harness import Client, Server, unique_name
from tests.integration.test_links import ask, running_with_link

SECRET = b"TOP-SECRET-outside-every-code-root-" + os.urandom(8).hex().encode()


@pytest.fixture
def secret() -> Iterator[Path]:
    """A 0600 file outside every code root (the server's roots are pytest's base temporary directory)."""
    directory = Path(tempfile.mkdtemp(prefix="fm-secret-", dir="/var/tmp"))
    path = directory / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    yield path
    path.unlink()
    directory.rmdir()


class Swapper(threading.Thread):
    """Swaps each racing file, by rename, between a regular file and a symlink to the secret."""

    def __init__(self, directory: Path, secret: Path, files: int) -> None:
        super().__init__(daemon=True)
        self.directory, self.secret, self.files = directory, secret, files
        self.stopped = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            for i in range(self.files):
                regular, link, target = (self.directory / f".r{i}", self.directory / f".l{i}", self.directory / f"f{i}.txt")
                regular.write_bytes(b"public\n")
                os.rename(regular, target)
                os.symlink(self.secret, link)
                os.rename(link, target)
                self.swaps += 1


async def files_under(docker: aiodocker.Docker, docker_id: str, path: str) -> dict[str, bytes]:
    """Every regular file under `path` in the container, read back through Docker's archive API."""
    tar = await docker.containers.container(docker_id).get_archive(path)
    with tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


async def test_a_racing_symlink_swap_never_deploys_a_file_from_outside_the_roots(
    client: Client, docker: aiodocker.Docker, tmp_path: Path, secret: Path
):
    race = tmp_path / "race"
    race.mkdir()
    (race / "main.py").write_text("def handle(message):\n    return None\n")
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("race"), "code_path": str(race)})
    cid, docker_id = created["container_id"], created["docker_id"]
    swapper = Swapper(race, secret, files=8)
    swapper.start()
    checked: dict[str, dict[str, bytes]] = {}  # revision -> what the container held right after it was deployed
    requests, deadline = 0, time.monotonic() + 20
    try:
        while requests < 300 and time.monotonic() < deadline:
            reply = await client.call("update_container", {"container_id": cid, "code_path": str(race)})
            requests += 1
            assert "code_revision" in reply, reply
            if reply["code_revision"] not in checked:  # a new content: read what was really deployed
                checked[reply["code_revision"]] = await files_under(docker, docker_id, "/opt/flow")
    finally:
        swapper.stopped.set()
        swapper.join()
    print(f"race: {requests} updates, {swapper.swaps} swaps, {len(checked)} distinct revisions read back")
    leaked = sorted({name for files in checked.values() for name, content in files.items() if SECRET in content})
    assert not leaked, f"the outside file was deployed as {leaked} ({requests} updates, {swapper.swaps} swaps)"
    assert requests >= 50 and len(checked) >= 2, (requests, len(checked))  # the race really ran
    await client.call("delete_container", {"container_id": cid})


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_a_huge_sparse_file_is_refused_without_reading_it(docker: aiodocker.Docker, tmp_path: Path):
    code = tmp_path / "huge"
    code.mkdir()
    (code / "main.py").write_text("def handle(message):\n    return None\n")
    with open(code / "blob.bin", "wb") as fh:
        fh.truncate(2 << 30)  # 2 GiB, sparse: costs no disk
    server = Server(tmp_path / "srv")
    (tmp_path / "srv").mkdir()
    server.start()
    client = await Client().connect(server.url)
    try:
        assert server.proc is not None
        before = vm_hwm_kib(server.proc.pid)
        name = unique_name("huge")
        reply = await client.call("create_container", {"image": "flow:latest", "name": name, "code_path": str(code)})
        assert reply["error_type"] == "validation_error" and reply["details"]["field"] == "code_path", reply
        assert "64 MiB" in reply["message"], reply
        peak = vm_hwm_kib(server.proc.pid)
        print(f"server peak resident memory: {before} KiB before the request, {peak} KiB after")
        assert peak < 200 * 1024, f"the server's peak resident memory went from {before} KiB to {peak} KiB"
        assert not await docker.containers.list(all=True, filters={"name": [name]})
        assert not list((tmp_path / "srv" / "state" / server.instance / "code").glob("*.tar")), "nothing is kept of a refused snapshot"
    finally:
        await client.close()
        server.stop()


def archives(server: Server) -> set[str]:
    return {p.name for p in (server.workdir / "state" / server.instance / "code").glob("*.tar")}


async def test_archives_go_with_the_last_record_that_uses_them(client: Client, server: Server, tmp_path: Path):
    code = tmp_path / "pruned"
    code.mkdir()
    (code / "main.py").write_text(f"# {unique_name()}\ndef handle(message):\n    return None\n")  # a new revision
    created = await client.call("create_container", {"image": "flow:latest", "name": unique_name("prune"), "code_path": str(code)})
    archive = f"{created['code_revision']}.tar"
    assert archive in archives(server)
    await client.call("delete_container", {"container_id": created["container_id"]})
    assert archive not in archives(server), "a delete prunes the archive no record uses any more"

    (code / "main.py").write_text(f"# {unique_name()}\ndef handle(message):\n    return None\n")
    before = archives(server)
    failed = await client.call("create_container", {"image": "flow-no-such-image:never", "name": unique_name("prune"), "code_path": str(code)})
    assert failed["error_type"] == "image_not_found", failed
    assert archives(server) <= before, "a withdrawn create keeps no archive"


def two_module_code(directory: Path, helper_value: str, data: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text("""
import os
import helper

def handle(message):
    if message.get("command") == "mark":
        with open("/opt/flow/outside.txt", "w") as f:
            f.write("kept")
    return {"command": "answer", "data": {
        "helper": helper.VALUE,
        "data_exists": os.path.exists("/opt/flow/code/data.txt"),
        "relative_data_exists": os.path.exists("data.txt"),
        "outside": open("/opt/flow/outside.txt").read() if os.path.exists("/opt/flow/outside.txt") else None,
    }}
""")
    (directory / "helper.py").write_text(f"VALUE = {helper_value!r}\n")
    if data:
        (directory / "data.txt").write_text("only in revision 1\n")
    return directory


@pytest.fixture
async def this_runtime(docker: aiodocker.Docker) -> str:
    """The reference image with this checkout's runtime under a tag of this test's own: flow:latest is
    shared with test sessions of other checkouts, which tag their own runtime at their start."""
    tag = "flow-runtime-test:latest"
    await ensure_flow_image(docker, tag)
    return tag


async def test_an_update_replaces_the_whole_code_tree_and_drops_old_modules(client: Client, tmp_path: Path, this_runtime: str):
    v1 = two_module_code(tmp_path / "v1", "helper-1", data=True)
    v2 = two_module_code(tmp_path / "v2", "helper-2", data=False)
    created = await running_with_link(client, code_path=str(v1), image=this_runtime)
    cid = created["container_id"]
    assert (await ask(client, cid, "mark"))["data"] == {"helper": "helper-1", "data_exists": True, "relative_data_exists": True, "outside": "kept"}
    updated = await client.call("update_container", {"container_id": cid, "code_path": str(v2)})
    assert updated["status"] == "updated", updated
    assert (await ask(client, cid, "read"))["data"] == {
        "helper": "helper-2",
        "data_exists": False,
        "relative_data_exists": False,
        "outside": "kept",
    }, "the new helper module answers, the deleted file is gone, a file outside the code tree stays"
    status = await client.call("get_container_status", {"container_id": cid})
    assert status["running_revision"] == updated["code_revision"]
    await client.call("delete_container", {"container_id": cid})
