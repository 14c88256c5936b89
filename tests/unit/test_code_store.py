"""The code store: a snapshot cannot be redirected by symlinks, its size is decided before reading,
archives live on disk and go when nothing refers to them."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import shutil
import sys
import tarfile
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import store.code_snapshot as code
from store.code import CODE_DIR, REVISION_FILE, CodeError, CodeStore
from store.code_snapshot import _snapshot


def members(store: CodeStore, revision: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(store.path(revision)) as tar:
        return {m.name: m for m in tar.getmembers()}


def contents(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"x")
    (root / "main.py").write_text("import helper\n")
    (root / "sub" / "helper.py").write_text("VALUE = 1\n")
    return root


async def test_a_snapshot_is_a_fresh_revision_directory_and_a_symlink_switched_last(tmp_path: Path):
    src = tree(tmp_path / "src")
    (src / "outside").symlink_to("/etc/passwd")
    os.mkfifo(src / "pipe")  # never opened for reading (that would block)
    store = CodeStore(tmp_path / "store")
    snap = await store.snapshot(str(src))
    assert (snap.files, snap.size) == (2, len("import helper\n") + len("VALUE = 1\n"))
    names = list(members(store, snap.revision))
    prefix = names[0] + "/"
    assert prefix.startswith("opt/flow/revisions/") and members(store, snap.revision)[names[0]].isdir()
    assert names[1:] == [prefix + "main.py", prefix + "sub/helper.py", prefix + REVISION_FILE, CODE_DIR.strip("/")]
    link = members(store, snap.revision)[CODE_DIR.strip("/")]
    assert link.issym() and link.linkname == "revisions/" + prefix.rstrip("/").rsplit("/", 1)[1]
    assert contents(store.path(snap.revision))[prefix + REVISION_FILE] == snap.revision.encode()
    again = await store.snapshot(str(src))
    assert again.revision == snap.revision and sorted(p.name for p in store.directory.iterdir()) == [f"{snap.revision}.tar"], (
        "the same content is one archive, and no temporary file stays"
    )


def test_the_revision_of_unchanged_code_is_what_earlier_versions_computed(tmp_path: Path):
    src = tree(tmp_path / "src")
    # sha256 over (path, mode, size, content) in os.walk order, as the in-memory version hashed it
    digest = hashlib.sha256()
    for relative in ("main.py", "sub/helper.py"):
        content = (src / relative).read_bytes()
        digest.update(f"{relative}\0{0o644:o}\0{len(content)}\0".encode() + content)
    built = _snapshot(str(src), tmp_path)
    assert built.revision == digest.hexdigest()[:16]


def test_a_symlink_in_any_component_of_the_root_is_not_followed(tmp_path: Path):
    real = tree(tmp_path / "real")
    (tmp_path / "alias").symlink_to(real)
    for path in (tmp_path / "alias", tmp_path / "alias" / "sub"):
        with pytest.raises(CodeError, match="symlink"):
            _snapshot(str(path), tmp_path)
    with pytest.raises(CodeError, match="normalised"):
        _snapshot(str(tmp_path / "real" / ".." / "real"), tmp_path)
    assert not list(tmp_path.glob("*.part"))


def test_a_file_swapped_for_a_symlink_while_snapshots_run_is_never_read_through_it(tmp_path: Path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "g").write_bytes(b"SECRET")
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    stop = threading.Event()

    def swap() -> None:  # files and a directory, each by rename, between real and a symlink to the secrets
        while not stop.is_set():
            for i in range(4):
                (src / f".r{i}").write_bytes(b"public")
                os.rename(src / f".r{i}", src / f"f{i}")
                os.symlink(secrets / "g", src / f".l{i}")
                os.rename(src / f".l{i}", src / f"f{i}")
            fresh = src / ".fresh"
            fresh.mkdir()
            (fresh / "g").write_bytes(b"public")
            if (src / "d").is_symlink():
                os.rename(src / "d", src / ".gone")
                os.unlink(src / ".gone")
            os.rename(fresh, src / "d")  # a real directory
            os.rename(src / "d", src / ".gone")
            os.symlink(secrets, src / ".link")
            os.rename(src / ".link", src / "d")  # now a symlink to the secrets
            shutil.rmtree(src / ".gone")

    racer = threading.Thread(target=swap, daemon=True)
    racer.start()
    seen: set[frozenset[str]] = set()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            built = _snapshot(str(src), out)
            files = contents(built.path)
            assert all(b"SECRET" not in content for content in files.values()), files
            seen.add(frozenset(name.split("/", 4)[-1] for name in files))
            built.path.unlink()
    finally:
        stop.set()
        racer.join()
    assert len(seen) > 1, "the race changed what the snapshots saw"


def test_the_size_is_refused_from_the_descriptor_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(code, "MAX_CODE_BYTES", 1 << 20)
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big.bin", "wb") as fh:
        fh.truncate(512 << 20)  # sparse
    tracemalloc.start()
    try:
        with pytest.raises(CodeError, match="larger than 1 MiB"):
            _snapshot(str(src), tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"
    assert not list(tmp_path.glob("*.part"))


def test_too_many_entries_are_refused_while_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(code, "MAX_FILES", 5)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"d{i}").mkdir()  # empty directories count too
    with pytest.raises(CodeError, match="5 files"):
        _snapshot(str(src), tmp_path)


async def test_retain_prunes_archives_and_a_restart_lists_without_loading(tmp_path: Path):
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    (two / "main.py").write_text("changed\n")
    store = CodeStore(tmp_path / "store")
    first, second = await store.snapshot(str(one)), await store.snapshot(str(two))
    await store.retain(lambda: {second.revision})
    assert first.revision not in store and not store.path(first.revision).exists()
    assert await store.open(first.revision) is None
    (store.directory / "crashed.part").write_bytes(b"half")
    reopened = CodeStore(tmp_path / "store")
    assert second.revision in reopened and not (store.directory / "crashed.part").exists()
    archive = await reopened.open(second.revision)
    assert archive is not None
    archive.close()


async def test_without_a_state_directory_archives_live_in_a_private_temporary_directory(tmp_path: Path):
    store = CodeStore()
    snap = await store.snapshot(str(tree(tmp_path / "src")))
    assert store.path(snap.revision).is_file() and oct(store.directory.stat().st_mode & 0o777) == "0o700"
    store.close()
    assert not store.directory.exists()


def test_an_archive_of_an_earlier_version_is_converted_at_start(tmp_path: Path):
    directory = tmp_path / "store"
    directory.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in (("main.py", b"print(1)\n"), (REVISION_FILE, b"abc")):
            info = tarfile.TarInfo(f"opt/flow/code/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    (directory / "abc.tar").write_bytes(buffer.getvalue())
    store = CodeStore(directory)
    assert "abc" in store
    names = members(store, "abc")
    link = names[CODE_DIR.strip("/")]
    assert link.issym() and link.linkname.startswith("revisions/")
    files = contents(store.path("abc"))
    assert files[f"opt/flow/{link.linkname}/main.py"] == b"print(1)\n"
    assert files[f"opt/flow/{link.linkname}/{REVISION_FILE}"] == b"abc"


def test_the_runtime_loads_a_whole_new_tree_and_forgets_the_old_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from flow_runtime.runtime import UserCode

    revisions = tmp_path / "revisions"
    for name, value in (("a", "one"), ("b", "two")):
        (revisions / name).mkdir(parents=True)
        (revisions / name / "main.py").write_text("import fm_test_helper\nVALUE = fm_test_helper.VALUE\n")
        (revisions / name / "fm_test_helper.py").write_text(f"VALUE = {value!r}\n")
        (revisions / name / REVISION_FILE).write_text(name)
    os.utime(revisions / "a", (0, 0))
    link = tmp_path / "code"
    link.symlink_to("revisions/a")
    monkeypatch.chdir(tmp_path)
    user = UserCode(link)
    try:
        user.load()
        assert (user.revision, user.module.VALUE) == ("a", "one")  # type: ignore[union-attr]
        (tmp_path / "next").symlink_to("revisions/b")
        os.replace(tmp_path / "next", link)
        user.load()
        assert (user.revision, user.module.VALUE) == ("b", "two")  # type: ignore[union-attr]
        assert os.getcwd() == str(revisions / "b")
        assert str(revisions / "a") not in sys.path
        user.prune()
        assert sorted(p.name for p in revisions.iterdir()) == ["b"], "the old revision is removed"
    finally:
        sys.modules.pop("fm_test_helper", None)
        sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path))]


async def test_a_retried_put_archive_streams_the_whole_archive_again(tmp_path: Path):
    """aiohttp closes the file it sent; a retry after a transient failure must send it all again, and
    an archive pruned meanwhile stays readable through the descriptor the deploy holds."""
    import aiodocker

    from controller.adapters.docker import DockerAdapter

    sent: list[bytes] = []

    class FakeContainer:
        async def put_archive(self, path: str, data: io.BufferedReader) -> None:
            sent.append(data.read())
            data.close()  # as aiohttp does
            if len(sent) == 1:
                raise aiodocker.DockerError(500, {"message": "engine hiccup"})

    class FakeContainers:
        def container(self, docker_id: str) -> FakeContainer:
            return FakeContainer()

    adapter = DockerAdapter.__new__(DockerAdapter)
    adapter.calls, adapter.attempts, adapter.on_unreachable = collections.Counter(), 3, lambda: None
    adapter.docker = type("FakeDocker", (), {"containers": FakeContainers()})()
    path = tmp_path / "archive.tar"
    path.write_bytes(b"0123456789" * 1000)
    with open(path, "rb") as archive:
        path.unlink()
        await adapter.put_archive("abc", "/", archive)
    assert sent == [b"0123456789" * 1000] * 2


def test_a_file_name_that_is_not_utf8_is_part_of_a_revision(tmp_path: Path):
    """Linux names are bytes: one that is not UTF-8 was an internal error (UnicodeEncodeError), not a revision."""
    src = tree(tmp_path / "src")
    with open(os.path.join(os.fsencode(src), b"\xff.txt"), "wb") as fh:
        fh.write(b"data")
    built = _snapshot(str(src), tmp_path)
    assert built.files == 3
