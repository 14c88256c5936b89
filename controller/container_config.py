"""Turning a desired record into the body of Docker's container-create call (pure)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from controller import labels
from store.records import Record

DEFAULT_MEMORY_LIMIT = 1 << 30  # bytes; a request may ask for less, or more up to the policy's maximum
DEFAULT_PIDS_LIMIT = 512  # a fork bomb stops here instead of exhausting the host's pids
# The only capabilities a container keeps: what images commonly need to start (chown their data, drop to a
# user, bind a port below 1024, signal their children). Of Docker's default set this drops MKNOD (device
# nodes), NET_RAW (forged packets on the bridge), AUDIT_WRITE, SETFCAP, SETPCAP and SYS_CHROOT.
DEFAULT_LOG_MAX_SIZE, DEFAULT_LOG_MAX_FILES = "10m", 3  # Docker's log of a container: 3 files of 10 MB at most
DEFAULT_DISK_LIMIT = 10 << 30  # bytes of a container's writable layer, where the storage driver can bound it
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE")


@dataclass(frozen=True)
class ContainerDefaults:
    """Host-wide settings every managed container gets."""

    instance: str = "default"
    publish_host_ip: str = "127.0.0.1"
    stop_timeout: int = 10
    init: bool = True  # a tiny init as PID 1: reaps zombies, makes SIGTERM stops fast
    memory_limit: int = DEFAULT_MEMORY_LIMIT  # when the request sets none
    pids_limit: int = DEFAULT_PIDS_LIMIT
    # Docker's json-file log of a container is rotated: at most log_max_files files of log_max_size each
    # ("" leaves logging to the daemon's configuration). storage_size bounds the writable layer in bytes
    # (0: none), set only when the engine's storage driver was found to support it (adapters/docker/storage.py).
    log_max_size: str = DEFAULT_LOG_MAX_SIZE
    log_max_files: int = DEFAULT_LOG_MAX_FILES
    storage_size: int = 0


def port_key(container_port: str) -> str:
    return container_port if "/" in container_port else f"{container_port}/tcp"


def docker_create_body(
    record: Record, defaults: ContainerDefaults, extra_binds: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    spec = record.spec
    env = {**spec.environment, **(extra_env or {}), "FLOW_CONTAINER_ID": record.id}
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": {
            labels.MANAGED: "true",
            labels.INSTANCE: defaults.instance,
            labels.CONTAINER_ID: record.id,
            labels.NAME: spec.name,
        },
        "ExposedPorts": {port_key(p): {} for p in spec.ports},
        "StopTimeout": defaults.stop_timeout,
        "HostConfig": {
            "Binds": [f"{host}:{inside}" for host, inside in spec.volumes.items()] + list(extra_binds),
            "PortBindings": {port_key(p): [{"HostIp": defaults.publish_host_ip, "HostPort": str(host_port)}] for p, host_port in spec.ports.items()},
            "Init": defaults.init,
            # Unprivileged, whatever the image asks for: no privileged mode, no setuid gains, no host namespaces
            # (network, pid, ipc and uts stay the container's own), bounded memory (no swap) and pids.
            "Privileged": False,
            "CapDrop": ["ALL"],
            "CapAdd": list(CAPABILITIES),  # an allowlist: Docker's defaults may grow
            "SecurityOpt": ["no-new-privileges"],
            "IpcMode": "private",
            "Memory": defaults.memory_limit,
            "MemorySwap": defaults.memory_limit,
            "PidsLimit": defaults.pids_limit,
        },
    }
    if defaults.log_max_size:
        body["HostConfig"]["LogConfig"] = {
            "Type": "json-file",
            "Config": {"max-size": defaults.log_max_size, "max-file": str(defaults.log_max_files)},
        }
    if defaults.storage_size:
        body["HostConfig"]["StorageOpt"] = {"size": str(defaults.storage_size)}
    if spec.command:
        body["Cmd"] = list(spec.command)
    if spec.memory_limit:
        body["HostConfig"].update(Memory=spec.memory_limit, MemorySwap=spec.memory_limit)  # no swap: OOM is OOM
    if spec.pids_limit:
        body["HostConfig"]["PidsLimit"] = spec.pids_limit
    body["Labels"][labels.SPEC_HASH] = config_hash(body)
    return body


def config_hash(body: dict[str, Any]) -> str:
    """Hash of everything the container is created with, as docker compose does.

    It covers the manager's own settings too (link mount, stop timeout, limits,
    publish address), so changing one of them recreates the containers it shapes
    on the next reconcile, instead of leaving them silently out of date.
    """
    hashed = {**body, "Labels": {k: v for k, v in body["Labels"].items() if k != labels.SPEC_HASH}}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]
