"""Can this engine bound a container's writable layer (`HostConfig.StorageOpt.size`)?

Only some storage drivers can: overlay2 on an xfs backing filesystem mounted
with `pquota`, btrfs, zfs, devicemapper. Docker refuses every create that asks
for a size on any other setup, so the manager must know before it asks: the
driver and backing filesystem from `docker info` rule most setups out, and
where they might allow it (xfs without `pquota` cannot be told from `docker
info`), a throwaway container is created with the size and removed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker

log = logging.getLogger("flow_manager.docker")
SIZED_DRIVERS = ("btrfs", "zfs", "devicemapper", "windowsfilter")


@dataclass(frozen=True)
class LayerBound:
    enforced: bool
    why: str  # the driver and backing filesystem, and what decided


def driver_of(info: Mapping[str, Any]) -> tuple[str, str]:
    status = dict(tuple(pair) for pair in info.get("DriverStatus") or () if isinstance(pair, list) and len(pair) == 2)
    return str(info.get("Driver") or "?"), str(status.get("Backing Filesystem") or "?")


def may_support(driver: str, backing: str) -> bool:
    """Worth a probe: Docker would otherwise refuse the size on every create."""
    return driver in SIZED_DRIVERS or driver == "overlay2" and backing == "xfs"


async def probe(docker: aiodocker.Docker, image: str, size: int) -> LayerBound:
    """Ask the engine; a probe that cannot run (engine away, image missing) means not enforced."""
    try:
        driver, backing = driver_of(await docker.system.info())
    except (aiodocker.DockerError, OSError) as exc:
        return LayerBound(False, f"docker info failed ({exc})")
    where = f"storage driver {driver} on {backing}"
    if not may_support(driver, backing):
        return LayerBound(False, f"{where} cannot bound a container's writable layer")
    body: dict[str, Any] = {"Image": image, "HostConfig": {"StorageOpt": {"size": str(size)}}, "Labels": {"flow-manager.probe": "storage-size"}}
    try:
        container = await docker.containers.create(body)
    except aiodocker.DockerError as exc:
        return LayerBound(False, f"{where} refused a size ({exc.message}); for overlay2 mount the xfs backing filesystem with pquota")
    try:
        await container.delete(force=True)
    except aiodocker.DockerError as exc:
        log.warning("could not remove the storage-size probe container %s: %s", container.id, exc)
    return LayerBound(True, f"{where} accepted a size")


async def enforced_bound(docker: aiodocker.Docker, image: str, limit: int) -> int:
    """`limit` where the engine can enforce it, else 0 (said once, at start: --container-disk-limit)."""
    if not limit:
        return 0
    try:
        bound = await asyncio.wait_for(probe(docker, image, limit), 15)
    except TimeoutError:
        bound = LayerBound(False, "the engine did not answer within 15 s")
    if bound.enforced:
        log.info("writable layer of each container bounded to %d bytes (%s)", limit, bound.why)
    else:
        log.warning("writable layers are NOT bounded: %s (see README, Limitations)", bound.why)
    return limit if bound.enforced else 0
