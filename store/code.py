"""Content-addressed snapshots of user code directories.

An update reads `code_path` once, at request time, into a tar archive keyed
by the hash of its contents (the code revision). The controller copies that
archive into containers, so a container recreated later gets exactly the
revision that was asked for, even if the directory changed since.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

REVISION_FILE = ".flow-revision"
CODE_DIR = "/opt/flow/code"  # where code lands in a container; the runtime reads FLOW_CODE_DIR
MAX_CODE_BYTES = 64 << 20
MAX_FILES = 10_000


class CodeError(ValueError):
    """The directory cannot be used as code (missing, unreadable, too large)."""


@dataclass(frozen=True)
class CodeSnapshot:
    revision: str
    archive: bytes
    files: int


def _snapshot(code_path: str) -> CodeSnapshot:
    root = Path(code_path)
    if not root.is_dir():
        raise CodeError(f"{code_path} is not a readable directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise CodeError(f"{code_path} is not readable")
    entries: list[tuple[str, int, bytes]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.is_symlink() or not path.is_file():
                continue
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise CodeError(f"cannot read {path}: {exc.strerror}") from None
            total += len(content)
            if total > MAX_CODE_BYTES or len(entries) >= MAX_FILES:
                raise CodeError(f"{code_path} is larger than {MAX_CODE_BYTES >> 20} MiB or {MAX_FILES} files")
            entries.append((path.relative_to(root).as_posix(), path.stat().st_mode & 0o755 | 0o644, content))
    digest = hashlib.sha256()
    for relative, mode, content in entries:
        digest.update(f"{relative}\0{mode:o}\0{len(content)}\0".encode() + content)
    revision = digest.hexdigest()[:16]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative, mode, content in [*entries, (REVISION_FILE, 0o644, revision.encode())]:
            info = tarfile.TarInfo(f"{CODE_DIR.strip('/')}/{relative}")  # extracted at "/": any image works
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    return CodeSnapshot(revision, buffer.getvalue(), len(entries))


class CodeStore:
    """Archives by revision, in memory and (with a directory) on disk, so they outlive a restart."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._archives: dict[str, bytes] = {}
        self.directory = Path(directory) if directory else None
        if self.directory is not None:  # start-up only: load what a previous run kept
            self.directory.mkdir(parents=True, exist_ok=True)
            for path in self.directory.glob("*.tar"):
                self._archives[path.stem] = path.read_bytes()

    async def snapshot(self, code_path: str) -> CodeSnapshot:
        """Read a directory (off the event loop) and keep its archive."""
        snap = await asyncio.to_thread(_snapshot, code_path)
        if snap.revision not in self._archives and self.directory is not None:
            await asyncio.to_thread(_write_atomically, self.directory / f"{snap.revision}.tar", snap.archive)
        self._archives[snap.revision] = snap.archive
        return snap

    def archive(self, revision: str) -> bytes | None:
        return self._archives.get(revision)

    async def retain(self, revisions: set[str]) -> None:
        """Drop archives no record refers to any more."""
        for revision in set(self._archives) - revisions:
            del self._archives[revision]
            if self.directory is not None:
                await asyncio.to_thread((self.directory / f"{revision}.tar").unlink, True)


def _write_atomically(path: Path, content: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
