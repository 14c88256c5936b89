"""Reading a user's code directory into a tar archive: the descriptor walk behind a code snapshot.

The directory belongs to whoever may write under the code roots (a host user,
or a container whose volume lies there), so it is read as hostile: the walk
opens every component relative to its parent's descriptor without following
symlinks, decides on the opened descriptor (fstat), never on the path, checks
sizes before reading, and streams file content into an archive on disk, so
memory stays bounded whatever the tree holds.

In a container an archive lands as `/opt/flow/revisions/<snapshot>/…` and
ends with the symlink `/opt/flow/code -> revisions/<snapshot>`, so a new
revision replaces the whole code tree at once instead of being extracted over
the old one. store.code keeps the archives.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REVISION_FILE = ".flow-revision"
CODE_DIR = "/opt/flow/code"  # in a container: a symlink to the current revision; the runtime reads FLOW_CODE_DIR
REVISIONS_DIR = "/opt/flow/revisions"  # one directory per deployed snapshot
MAX_CODE_BYTES = 64 << 20
MAX_FILES = 10_000  # entries seen (files, directories, anything), so a huge directory is refused early
MAX_DEPTH = 64  # nested directories; bounds the descriptors held open at once
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CodeError(ValueError):
    """The directory cannot be used as code (missing, unreadable, too large)."""


@dataclass
class _Built:
    """A snapshot written to a temporary file, not yet kept under its revision."""

    revision: str
    files: int
    size: int
    path: Path


@dataclass
class _Walk:
    code_path: str
    tar: tarfile.TarFile
    prefix: str  # member names start here: opt/flow/revisions/<snapshot>/
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    files: int = 0
    entries: int = 0
    total: int = 0

    def too_large(self) -> CodeError:
        return CodeError(f"{self.code_path} is larger than {MAX_CODE_BYTES >> 20} MiB or {MAX_FILES} files")


def open_directory(path: str) -> int:
    """Open an absolute path as a directory from `/`, one component at a time, following no symlink.

    The policy admitted `path` after resolving it; walking it again without following links means
    the directory opened is the one at that path now, not wherever a symlink swapped in since points.
    """
    parts = [part for part in path.split("/") if part]
    if not path.startswith("/") or any(part in (".", "..") for part in parts):
        raise CodeError(f"{path} is not a normalised absolute path")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in parts:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CodeError(f"{path} is not a directory (or a component of it changed into a symlink)") from None
        raise CodeError(f"{path} is not a readable directory: {exc.strerror}") from None
    return fd


class _Content:
    """Reads exactly `size` bytes of an opened file for tarfile, hashing them on the way."""

    def __init__(self, fd: int, size: int, digest: "hashlib._Hash") -> None:
        self.fd, self.remaining, self.digest = fd, size, digest

    def read(self, n: int = CHUNK) -> bytes:
        data = os.read(self.fd, min(n, self.remaining, CHUNK)) if self.remaining > 0 else b""
        self.remaining -= len(data)
        self.digest.update(data)
        return data


def _add_file(walk: _Walk, parent: int, name: str, relative: str) -> None:
    # O_PATH opens without any side effect of the file's type (a FIFO or a device is never opened for
    # reading); only a descriptor fstat shows to be a regular file is reopened, through /proc, which
    # reaches the same inode and follows no name.
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return  # gone meanwhile
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            return  # a symlink (or anything else) swapped in since the listing: skipped, as symlinks are
        if walk.total + info.st_size > MAX_CODE_BYTES or walk.files >= MAX_FILES:
            raise walk.too_large()
        try:
            fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise CodeError(f"cannot read {walk.code_path}/{relative}: {exc.strerror}") from None
    finally:
        os.close(handle)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise CodeError(f"{walk.code_path}/{relative} changed while it was read")
        size, mode = opened.st_size, opened.st_mode & 0o755 | 0o644
        if walk.total + size > MAX_CODE_BYTES:
            raise walk.too_large()
        walk.total += size
        walk.files += 1
        walk.digest.update(f"{relative}\0{mode:o}\0{size}\0".encode("utf-8", "surrogateescape"))  # any byte name
        member = tarfile.TarInfo(walk.prefix + relative)
        member.size, member.mode, member.mtime = size, mode, 0
        try:
            walk.tar.addfile(member, _Content(fd, size, walk.digest))  # type: ignore[arg-type]
        except OSError as exc:  # tarfile's "unexpected end of data": the file shrank while read
            raise CodeError(f"{walk.code_path}/{relative} changed while it was read ({exc})") from None
    finally:
        os.close(fd)


def _walk(walk: _Walk, directory: int, relative: str, depth: int) -> None:
    """Files of a directory first, then its subdirectories, each in name order (os.walk's order, so
    revisions of unchanged code stay what earlier versions computed)."""
    if depth > MAX_DEPTH:
        raise CodeError(f"{walk.code_path} nests directories deeper than {MAX_DEPTH}")
    files, directories = [], []
    with os.scandir(directory) as listing:
        for entry in listing:
            walk.entries += 1
            if walk.entries > MAX_FILES:
                raise walk.too_large()
            try:
                kind = entry.stat(follow_symlinks=False).st_mode  # only sorts; the descriptor decides
            except OSError:
                continue
            if stat.S_ISDIR(kind) and entry.name != "__pycache__":
                directories.append(entry.name)
            elif stat.S_ISREG(kind):
                files.append(entry.name)
    for name in sorted(files):
        _add_file(walk, directory, name, relative + name)
    for name in sorted(directories):
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=directory)
        except OSError:
            continue  # a symlink swapped in, or gone: not followed
        try:
            _walk(walk, child, f"{relative}{name}/", depth + 1)
        finally:
            os.close(child)


def finish_tree(tar: tarfile.TarFile, prefix: str, revision: str) -> None:
    """The revision file, then the symlink that makes this snapshot the code tree (last: Docker
    extracts in order, so the switch comes after every file is in place)."""
    content = revision.encode()
    member = tarfile.TarInfo(prefix + REVISION_FILE)
    member.size, member.mode, member.mtime = len(content), 0o644, 0
    tar.addfile(member, io.BytesIO(content))
    link = tarfile.TarInfo(CODE_DIR.strip("/"))
    link.type, link.mode, link.mtime = tarfile.SYMTYPE, 0o777, 0
    link.linkname = os.path.relpath("/" + prefix.rstrip("/"), os.path.dirname(CODE_DIR))  # revisions/<snapshot>
    tar.addfile(link)


def start_tree(tar: tarfile.TarFile) -> str:
    """A fresh directory for this snapshot; its name is unique, the revision is in its .flow-revision."""
    prefix = f"{REVISIONS_DIR.strip('/')}/{secrets.token_hex(8)}/"
    directory = tarfile.TarInfo(prefix.rstrip("/"))
    directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(directory)
    return prefix


def _snapshot(code_path: str, into: Path) -> _Built:
    """Read a directory into a temporary archive file under `into`."""
    root = open_directory(code_path)
    handle, name = tempfile.mkstemp(dir=into, suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                walk = _Walk(code_path, tar, start_tree(tar))
                try:
                    _walk(walk, root, "", 0)
                except PermissionError as exc:
                    raise CodeError(f"{code_path} is not readable: {exc.strerror}") from None
                revision = walk.digest.hexdigest()[:16]
                finish_tree(tar, walk.prefix, revision)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(root)
    return _Built(revision, walk.files, walk.total, path)
