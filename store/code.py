"""Content-addressed snapshots of user code directories: the archives kept by revision.

An update reads `code_path` once, at request time, into a tar archive keyed
by the hash of its contents (the code revision; store.code_snapshot reads the
directory, as hostile). The controller copies that archive into containers,
so a container recreated later gets exactly the revision that was asked for,
even if the directory changed since. Archives live on disk (the state
directory, or a private temporary directory with `--store memory`).
"""

from __future__ import annotations

import asyncio
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from store.code_snapshot import CODE_DIR, REVISION_FILE, REVISIONS_DIR, CodeError, _snapshot, finish_tree, start_tree

__all__ = ["CODE_DIR", "REVISION_FILE", "REVISIONS_DIR", "CodeError", "CodeSnapshot", "CodeStore"]

_LEGACY_PREFIX = CODE_DIR.strip("/") + "/"  # archives of earlier versions extracted over /opt/flow/code


@dataclass(frozen=True)
class CodeSnapshot:
    revision: str
    files: int
    size: int = 0


def _convert_legacy(path: Path) -> None:
    """Rewrite an archive of an earlier version (files at opt/flow/code/…) in today's layout, streamed."""
    handle, name = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with tarfile.open(path, "r") as old, os.fdopen(handle, "wb") as out:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                prefix = start_tree(tar)
                revision = path.stem
                for member in old:
                    if not member.isfile() or not member.name.startswith(_LEGACY_PREFIX):
                        continue
                    relative = member.name[len(_LEGACY_PREFIX) :]
                    if relative == REVISION_FILE:
                        continue
                    member.name = prefix + relative
                    tar.addfile(member, old.extractfile(member))
                finish_tree(tar, prefix, revision)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _is_legacy(path: Path) -> bool:
    with tarfile.open(path, "r") as tar:
        first = tar.next()
    return first is not None and first.name.startswith(_LEGACY_PREFIX)


def _keep(built: Path, final: Path) -> None:
    os.replace(built, final)
    directory = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class CodeStore:
    """Archives by revision, as files: in the state directory (they outlive a restart) or, without one,
    in a private temporary directory. Only the set of revisions is held in memory."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="flow-manager-code-")
            directory = self._temporary.name
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # code may hold secrets of its own
        self._revisions: set[str] = set()
        self._lock = asyncio.Lock()  # a snapshot is kept and an archive pruned one at a time
        for leftover in self.directory.glob("*.part"):  # start-up only: a snapshot cut short by a crash
            leftover.unlink(missing_ok=True)
        for path in self.directory.glob("*.tar"):
            if _is_legacy(path):
                _convert_legacy(path)
            self._revisions.add(path.stem)

    def path(self, revision: str) -> Path:
        return self.directory / f"{revision}.tar"

    def __contains__(self, revision: object) -> bool:
        return revision in self._revisions

    async def snapshot(self, code_path: str) -> CodeSnapshot:
        """Read a directory (off the event loop) and keep its archive."""
        built = await asyncio.to_thread(_snapshot, code_path, self.directory)
        async with self._lock:
            if built.revision in self._revisions:
                await asyncio.to_thread(built.path.unlink, True)
            else:
                await asyncio.to_thread(_keep, built.path, self.path(built.revision))
                self._revisions.add(built.revision)
        return CodeSnapshot(built.revision, built.files, built.size)

    async def open(self, revision: str) -> BinaryIO | None:
        """The archive of a revision, opened for streaming (an unlinked archive stays readable)."""
        if revision not in self._revisions:
            return None
        try:
            return await asyncio.to_thread(open, self.path(revision), "rb")
        except FileNotFoundError:
            return None

    async def retain(self, referenced: Callable[[], set[str]]) -> None:
        """Drop archives no record refers to any more. `referenced` is asked under the lock, so a
        snapshot kept meanwhile (and the intent written right after it) is seen."""
        async with self._lock:
            drop = self._revisions - referenced()
            self._revisions -= drop
            for revision in drop:
                await asyncio.to_thread(self.path(revision).unlink, True)

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
