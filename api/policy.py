"""Request policy: what a client may ask Docker for, checked before any intent is written.

The manager holds the Docker socket, so a create request is a request to run
something as root on the host. The safe default allows what a flow needs (a
local image, its own link, ports on loopback) and nothing that reaches into the
host: no bind mounts and no host directory read as code until the operator
names the roots that may be used. Paths are compared after resolving symlinks
and normalising, so `..` tricks and symlinks pointing out of an allowed root
are refused, and a few places are refused even under an allowed root (the
Docker socket, /proc, /sys, /etc, the manager's own state and links).

Bind sources may not nest: a volume whose real path lies inside, or contains,
another bind source of the same request or of any managed container is
refused. A container can write in its mounts, so with nesting it could replace
a directory on another bind source's path by a symlink, and Docker follows
symlinks at every start (controller.bind_sources re-checks each start; this
rule keeps containers out of the window between that check and the mount).

Pure apart from resolving paths on the local filesystem (call it off the event
loop); the bind sources of existing containers are passed in. The API turns a
PolicyViolation into one `validation_error` naming the field.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from api.schemas import CreateContainer
from controller.bind_sources import inside as _inside
from controller.bind_sources import nested
from flow_runtime.protocol import LINK_DIR as LINK_DIR_IN_CONTAINER

# Never mountable and never read as code, whatever roots are allowed. A path is refused when it is one
# of these, lies inside one, or contains one (mounting /run would expose /run/docker.sock); so "/" is
# always refused. The manager's state and socket directories are added at start-up.
ALWAYS_FORBIDDEN = ("/var/run/docker.sock", "/run/docker.sock", "/proc", "/sys", "/etc", "/dev", "/boot", "/var/lib/docker", "/run/containerd")


class PolicyViolation(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def resolve(path: str) -> str:
    """Absolute, normalised, symlinks followed (for the part of the path that exists)."""
    return os.path.realpath(os.path.normpath(path))


def normalise_image(image: str) -> str:
    """`flow` means `flow:latest` to Docker; patterns are matched against what Docker will use."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in image else f"{image}:latest"


@dataclass(frozen=True)
class Admitted:
    """What a create request may use: host paths replaced by the real paths they resolve to."""

    volumes: dict[str, str]
    code_path: str | None
    requested: dict[str, str] = field(default_factory=dict)  # real path -> the host path as requested


@dataclass(frozen=True)
class RequestPolicy:
    volume_roots: tuple[str, ...] = ()
    code_roots: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ALWAYS_FORBIDDEN
    image_patterns: tuple[str, ...] = ("*",)
    port_range: tuple[int, int] = (1024, 65535)
    reserved_ports: frozenset[int] = field(default_factory=frozenset)
    max_memory: int = 4 << 30
    max_pids: int = 4096

    @classmethod
    def build(
        cls, *, volume_roots: Iterable[str] = (), code_roots: Iterable[str] = (), forbidden: Iterable[str] = (), **rest: object
    ) -> "RequestPolicy":
        """Resolve the configured roots and forbidden places once, at start-up."""
        return cls(
            volume_roots=tuple(resolve(p) for p in volume_roots if p),
            code_roots=tuple(resolve(p) for p in code_roots if p),
            forbidden=tuple(dict.fromkeys(resolve(p) for p in (*ALWAYS_FORBIDDEN, *forbidden) if p)),
            **rest,  # type: ignore[arg-type]
        )

    # -- one rule each --------------------------------------------------------------
    def host_path(self, path: str, roots: tuple[str, ...], field_name: str, what: str) -> str:
        if not roots:
            raise PolicyViolation(field_name, f"{what} are not allowed on this manager (the operator has not configured any allowed root)")
        try:
            real = resolve(path)
        except (OSError, ValueError) as exc:  # e.g. a /proc entry the manager may not follow
            raise PolicyViolation(field_name, f"{path} cannot be resolved: {exc}") from None
        for place in self.forbidden:
            if _inside(real, place) or _inside(place, real):
                raise PolicyViolation(field_name, f"{path} resolves to {real}, which is or contains {place}: never allowed")
        if not any(_inside(real, root) for root in roots):
            raise PolicyViolation(field_name, f"{path} resolves to {real}, outside the allowed roots ({', '.join(roots)})")
        return real

    def image(self, image: str) -> None:
        name = normalise_image(image)
        if not any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(image, pattern) for pattern in self.image_patterns):
            raise PolicyViolation("image", f"image {image!r} does not match the allowed patterns ({', '.join(self.image_patterns)})")

    def host_port(self, container_port: str, host_port: int) -> None:
        low, high = self.port_range
        if not low <= host_port <= high:
            raise PolicyViolation(f"ports.{container_port}", f"host port {host_port} is outside the allowed range {low}-{high}")
        if host_port in self.reserved_ports:
            raise PolicyViolation(f"ports.{container_port}", f"host port {host_port} is the manager's own")

    @staticmethod
    def ports_free(ports: Mapping[str, int], published: Mapping[int, str]) -> None:
        """No host port another managed container publishes (`published`: host port -> container id).
        Docker would create the second container and fail every start of it ("port is already
        allocated"); refused here, the client learns it once, at once. Ports held outside the manager are
        not known until Docker tries (reported once per change of cause by the controller)."""
        for container_port, host_port in ports.items():
            if host_port in published:
                raise PolicyViolation(f"ports.{container_port}", f"host port {host_port} is already published by container {published[host_port]}")

    def mount_target(self, host: str, inside: str) -> None:
        target = os.path.normpath(inside)
        if target == "/" or _inside(target, LINK_DIR_IN_CONTAINER) or _inside(LINK_DIR_IN_CONTAINER, target):
            raise PolicyViolation(f"volumes.{host}", f"cannot mount over {target}: the container's link lives at {LINK_DIR_IN_CONTAINER}")

    def limits(self, memory_limit: int | None, pids_limit: int | None) -> None:
        if memory_limit is not None and memory_limit > self.max_memory:
            raise PolicyViolation("memory_limit", f"memory_limit may not exceed {self.max_memory} bytes")
        if pids_limit is not None and pids_limit > self.max_pids:
            raise PolicyViolation("pids_limit", f"pids_limit may not exceed {self.max_pids}")

    def code_path(self, path: str) -> str:
        return self.host_path(path, self.code_roots, "code_path", "code paths")

    @staticmethod
    def no_nesting(requested: Mapping[str, str], bound: Mapping[str, str]) -> None:
        """No bind source lies strictly inside or around another: `requested` maps this request's real
        paths to the host paths as asked, `bound` the bind sources of existing containers to their ids.

        The same directory bound by two containers is allowed: neither can rename the root of its mount.
        """
        seen: list[str] = []
        for real, host in requested.items():
            others = [(other, "mounted by this request too") for other in seen]
            others += [(other, f"the bind source of container {owner}") for other, owner in bound.items()]
            for other, whose in others:
                if nested(real, other):
                    where = "inside" if _inside(real, other) else "around"
                    raise PolicyViolation(
                        f"volumes.{host}",
                        f"{host} resolves to {real}, which is {where} {other}, {whose}: bind sources may not nest "
                        "(a container could swap one for a symlink through the other)",
                    )
            seen.append(real)

    # -- whole requests ------------------------------------------------------------------
    def admit_create(self, request: CreateContainer, bound: Mapping[str, str] | None = None) -> Admitted:
        """Every rule a create request must pass; the first one broken is the error.

        `bound`: the bind sources of the managed containers (real path -> container id). Check
        `no_nesting` again right before the record is written if anything was awaited in between.
        """
        self.image(request.image)
        volumes: dict[str, str] = {}
        requested: dict[str, str] = {}
        for host, inside in request.volumes.items():
            self.mount_target(host, inside)
            if os.path.normpath(inside) in map(os.path.normpath, volumes.values()):
                raise PolicyViolation(f"volumes.{host}", f"{inside} is already a mount target")
            real = self.host_path(host, self.volume_roots, f"volumes.{host}", "host volumes")
            if real in volumes:
                raise PolicyViolation(f"volumes.{host}", f"{host} resolves to {real}, which is already mounted")
            volumes[real], requested[real] = inside, host
        self.no_nesting(requested, bound or {})
        for container_port, host_port in request.ports.items():
            self.host_port(container_port, host_port)
        self.limits(request.memory_limit, request.pids_limit)
        code_path = self.code_path(request.code_path) if request.code_path else None
        return Admitted(volumes=volumes, code_path=code_path, requested=requested)
