"""Bind sources, checked where they are used: right before Docker creates or starts a container.

The request policy resolves a host path once, when the request arrives. Docker (runc) resolves the bind
source again at every start, following symlinks, so a directory replaced by a symlink after admission
would be bound wherever the symlink points: the host's `/` included. Before every create and every
start (a client's start or restart, a crash restart, a recreation) the admitted path is therefore
walked again from `/`, one component at a time, each opened relative to its parent with
O_PATH|O_NOFOLLOW (the openat walk kubelet uses for subPath since CVE-2017-1002101; openat2's
RESOLVE_NO_SYMLINKS decides the same in one call). A symlink anywhere, a device node, or a path the
current policy no longer admits refuses the start. Missing components below the volume root are created
here, the same way (mkdirat, then opened without following), so Docker never has to create one by
following a path of its own.

What remains is the time between this check and runc's mount (milliseconds): only someone who can write
in a directory on the path can swap a component in it. Containers cannot, because no bind source of a
managed container lies inside or contains another's (the policy refuses it at admission); host users who
can write under a volume root can, which is why the README asks for roots only trusted users can write.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from controller.adapters.docker import DockerFailure

BIND_SOURCE_CHANGED = "bind_source_changed"  # a symlink, a device or something unopenable on the path
BIND_SOURCE_NOT_ALLOWED = "bind_source_not_allowed"  # outside the current roots, or a forbidden place

_DIRECTORY = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_LEAF = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def inside(path: str, root: str) -> bool:
    """`path` is `root` or lies beneath it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def nested(a: str, b: str) -> bool:
    """One lies strictly inside the other. The same directory twice is not nesting: a container cannot
    rename the root of its own mount, so sharing one directory moves nobody's bind source."""
    return a != b and (inside(a, b) or inside(b, a))


def first_nesting(path: str, others: Iterable[str]) -> str | None:
    return next((other for other in others if nested(path, other)), None)


class BindSourceRefused(DockerFailure):
    """A container is not created or started: one of its bind sources is not what was admitted."""

    def __init__(self, host_path: str, container_path: str, why: str, reason: str, operation: str) -> None:
        super().__init__(
            "validation_error",
            f"volume {host_path} (mounted at {container_path}) {why}; the container is not started until the path is a plain directory again",
            operation=operation,
            permanent=True,
            details={"reason": reason, "host_path": host_path, "container_path": container_path},
        )
        self.reason, self.host_path = reason, host_path


def _describe(parent: int, name: str) -> str:
    """Why a component could not be opened without following it (for the message only)."""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if stat.S_ISLNK(mode):
        return "is a symlink"
    return "is not a directory" if not stat.S_ISDIR(mode) else "cannot be opened"


def walk(real: str, create_from: int | None = None) -> str | None:
    """Open `real` from `/` one component at a time, never following a symlink.

    Components at index `create_from` or deeper that do not exist are created (mode 0755). Returns why
    the path is refused, or None when every component is a real directory (the last one may also be a
    file or socket, never a symlink or a device) so the path resolves to itself.
    """
    if not real.startswith("/") or os.path.normpath(real) != real:
        return "is not a normalised absolute path"
    parts = [part for part in real.split("/") if part]
    current = os.open("/", _DIRECTORY)
    try:
        for index, name in enumerate(parts):
            last = index == len(parts) - 1
            shown = "/" + "/".join(parts[: index + 1])
            flags = _LEAF if last else _DIRECTORY
            try:
                opened = os.open(name, flags, dir_fd=current)
            except FileNotFoundError:
                if create_from is None or index < create_from:
                    return f"cannot be used: {shown} does not exist"
                try:
                    os.mkdir(name, 0o755, dir_fd=current)
                except FileExistsError:
                    pass  # someone else made it meanwhile: opened below without following, like any other
                except OSError as exc:
                    return f"cannot be used: {shown} is missing and cannot be created ({exc.strerror})"
                try:
                    opened = os.open(name, _DIRECTORY, dir_fd=current)
                except OSError:
                    return f"cannot be used: {shown} {_describe(current, name)}"
            except OSError:
                return f"cannot be used: {shown} {_describe(current, name)}"
            os.close(current)
            current = opened
            if last:
                mode = os.fstat(current).st_mode
                if stat.S_ISLNK(mode):
                    return f"cannot be used: {shown} is a symlink"
                if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
                    return f"cannot be used: {shown} is a device"
        return None
    finally:
        os.close(current)


def _nobody() -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class BindGuard:
    """The policy's volume roots and forbidden places (real paths, resolved at start-up), applied again
    to a record's bind sources each time Docker is about to use them.

    `bound` lists every managed container's bind sources (real path -> container id), so that records
    admitted before nesting was refused (an older journal) cannot start nested either.
    """

    roots: tuple[str, ...]
    forbidden: tuple[str, ...]
    bound: Callable[[], Mapping[str, str]] = _nobody

    def refusal(self, real: str, others: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """(reason, why) if `real` may not be bound now, else None. `others`: the other containers'
        bind sources (real path -> container id)."""
        for other, owner in (others or {}).items():
            if nested(real, other):
                where = "lies inside" if inside(real, other) else "contains"
                return BIND_SOURCE_NOT_ALLOWED, f"{where} {other}, the bind source of container {owner}"
        for place in self.forbidden:
            if inside(real, place) or inside(place, real):
                return BIND_SOURCE_NOT_ALLOWED, f"is or contains {place}, which is never mountable"
        root = next((r for r in self.roots if inside(real, r)), None)
        if root is None:
            return BIND_SOURCE_NOT_ALLOWED, "is outside the volume roots this manager allows now"
        why = walk(real, create_from=len([p for p in root.split("/") if p]))
        return (BIND_SOURCE_CHANGED, why) if why else None

    def verify(self, volumes: Mapping[str, str], operation: str, others: Mapping[str, str] | None = None) -> None:
        """Blocking (filesystem calls): run it in a thread."""
        for host, container_path in volumes.items():
            refused = self.refusal(host, others)
            if refused is not None:
                reason, why = refused
                raise BindSourceRefused(host, container_path, why, reason, operation)

    async def check(self, container_id: str, volumes: Mapping[str, str], operation: str) -> None:
        if volumes:
            others = {path: owner for path, owner in self.bound().items() if owner != container_id}
            await asyncio.to_thread(self.verify, dict(volumes), operation, others)
