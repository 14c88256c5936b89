"""Disk bounds in the create body: log rotation always, the writable-layer size only where the engine takes it."""

from __future__ import annotations

from controller.adapters.docker.storage import driver_of, may_support
from controller.container_config import ContainerDefaults, config_hash, docker_create_body
from store import ContainerSpec, DesiredState
from store.records import Record

RECORD = Record("0123456789ab", ContainerSpec(image="flow:latest", name="disk"), DesiredState.RUNNING, 1, 1.0)


def test_every_container_gets_a_rotated_log_and_a_layer_size_only_when_supported() -> None:
    host = docker_create_body(RECORD, ContainerDefaults())["HostConfig"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert "StorageOpt" not in host, "Docker refuses every create with a size its driver cannot enforce"
    sized = docker_create_body(RECORD, ContainerDefaults(storage_size=1 << 30))
    assert sized["HostConfig"]["StorageOpt"] == {"size": str(1 << 30)}
    assert "LogConfig" not in docker_create_body(RECORD, ContainerDefaults(log_max_size=""))["HostConfig"]
    assert config_hash(sized) != config_hash(docker_create_body(RECORD, ContainerDefaults())), "a new bound recreates"


def test_which_engines_are_worth_a_probe() -> None:
    info = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]}
    assert driver_of(info) == ("overlay2", "extfs") and not may_support(*driver_of(info))
    assert may_support("overlay2", "xfs") and may_support("btrfs", "?") and not may_support("vfs", "?")
    assert driver_of({"DriverStatus": None}) == ("?", "?")
