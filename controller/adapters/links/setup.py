"""The links' files on the host: the socket directory, each container's link directory and socket.

`<socket-dir>/.links/<id>/link.sock` is the container's socket; only its
directory is mounted into the container (read-only, at /run/flow), so a
container never sees another container's link. `<socket-dir>/<name>.sock` is
a symlink to it (the API's `socket_path`): still the container's end, so a host
process that connects there impersonates the container; `.links` (0700, the
manager's user) is what keeps other users out.

The manager never follows a path inside a link directory: a socket is bound
and given its mode in `.links`, which only the manager can write, and renamed
into place already listening. The manager never changes the mode of a
directory it did not create (`--socket-dir` may be a shared one such as /tmp).
Blocking file-system calls: run these in a thread.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

from flow_runtime.protocol import LINK_SOCKET_NAME

DEFAULT_SOCKET_DIR = "/tmp/kawaflow/sockets"
LINKS_DIR = ".links"  # in --socket-dir: the manager's own (0700), one directory per container in it
LINK_DIR_MODE = 0o755  # a container whose user is not the manager's must reach the socket
SOCKET_MODE = 0o666  # the container's user may not be root


def public_socket_path(socket_dir: str | Path, name: str) -> str:
    """`<socket-dir>/<name>.sock`: a symlink to the container's end of its link (connecting there impersonates it)."""
    return f"{str(socket_dir).rstrip('/')}/{name}.sock"


def link_dir(socket_dir: Path, container_id: str) -> Path:
    """The container's own link directory (the one mounted into it)."""
    return socket_dir / LINKS_DIR / container_id


def prepare(socket_dir: Path, container_id: str, public: Path) -> socket.socket:
    """Bind and listen on the container's link, and return the listening socket.

    The link directory is the container's (mounted at /run/flow; read-only, but a container created by an
    older manager had it writable), so nothing here follows a path inside it: the socket is bound and
    given its mode in `.links`, which only the manager can write, then renamed over whatever the link
    directory holds under link.sock (rename replaces a symlink, it never follows one). Every step is
    relative to a descriptor of `.links`, so no path is resolved twice.
    """
    socket_dir.mkdir(parents=True, exist_ok=True)  # created with the default mode when missing; never chmodded
    why = untrusted(os.path.abspath(socket_dir))
    if why is not None:  # Docker resolves the link mount by this path at every start: nobody else may move it
        raise PermissionError(f"refusing --socket-dir {socket_dir}: {why}")
    links = _own_directory(socket_dir, LINKS_DIR, 0o700)  # other local users could take over a link
    staged = f".{container_id}.sock"
    target = f"{container_id}/{LINK_SOCKET_NAME}"
    try:
        os.close(_own_directory(links, container_id, LINK_DIR_MODE))
        _unlink(staged, links)  # left over by a manager that died here
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(f"/proc/self/fd/{links}/{staged}")  # short, and not resolved through socket_dir again
            os.chmod(staged, SOCKET_MODE, dir_fd=links)
            listening.listen(100)
            try:
                os.rename(staged, target, src_dir_fd=links, dst_dir_fd=links)
            except IsADirectoryError:  # planted by a container of an older manager (a writable mount)
                shutil.rmtree(target, dir_fd=links)  # descriptor-based: follows no symlink inside
                os.rename(staged, target, src_dir_fd=links, dst_dir_fd=links)
        except BaseException:
            listening.close()
            _unlink(staged, links)
            raise
    finally:
        os.close(links)
    relative = os.path.relpath(socket_dir / LINKS_DIR / target, public.parent)
    try:
        if public.is_symlink() and os.readlink(public) == relative:
            return listening
        if public.is_symlink() or public.exists():
            public.unlink()
        public.symlink_to(relative)
    except BaseException:
        listening.close()
        raise
    return listening


def untrusted(path: str, me: int | None = None) -> str | None:
    """Why another local user could rename or replace a directory on `path` (so Docker, which resolves the
    link mount by path at every start, could be sent elsewhere), or None.

    Every directory from `/` down must belong to root or the manager's user and be writable by nobody else,
    unless it is sticky (as /tmp): then nobody else can rename what the next, checked, component holds. A
    symlink on the way must belong to root or the manager's user, and its target is checked the same way.
    """
    me = os.geteuid() if me is None else me
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    shown = ""
    try:
        for name in [part for part in path.split("/") if part]:
            why = _guarded(fd, shown or "/", me)
            if why is not None:
                return why
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            shown += "/" + name
            if stat.S_ISLNK(info.st_mode):
                if info.st_uid not in (0, me):
                    return f"{shown} is a symlink of uid {info.st_uid}"
                target = os.path.realpath(shown)
                why = untrusted(target, me)
                if why is not None:
                    return why
                opened = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
            else:
                opened = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = opened
        return _guarded(fd, shown or "/", me)
    finally:
        os.close(fd)


def _guarded(fd: int, shown: str, me: int) -> str | None:
    info = os.fstat(fd)
    if info.st_uid not in (0, me):
        return f"{shown} belongs to uid {info.st_uid}, neither root nor the manager's user"
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        return f"{shown} is writable by other users and not sticky"
    return None


def _own_directory(parent: Path | int, name: str, mode: int) -> int:
    """Open (creating it with `mode` if missing) a directory the manager owns, and return its descriptor.

    A symlink or anything else in its place, or a directory of another user, is refused; a mode that
    differs from `mode` is fixed on the descriptor (the directory is the manager's own).
    """
    parent_fd = parent if isinstance(parent, int) else os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    where = LINKS_DIR if isinstance(parent, int) else parent
    try:
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
        except FileExistsError:
            pass
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
        except OSError as exc:
            raise PermissionError(f"refusing {name} in {where}: not a directory of its own ({exc.strerror})") from None
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            os.close(fd)
            raise PermissionError(f"refusing {name} in {where}: owned by uid {info.st_uid}, not the manager's")
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
        return fd
    finally:
        if not isinstance(parent, int):
            os.close(parent_fd)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def cleanup(directory: Path, public: Path) -> None:
    if public.is_symlink():
        public.unlink()
    shutil.rmtree(directory, ignore_errors=True)
