from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.errors import from_validation
from api.schemas import ContainerRef, CreateContainer, SendMessage
from controller.adapters.stats import format_uptime, resource_usage
from controller.container_config import ContainerDefaults, docker_create_body
from controller.observed import parse_docker_time
from flow_runtime import framing
from store import ContainerSpec, DesiredState, Record


def test_reference_create_request_is_accepted():
    req = CreateContainer.model_validate(
        {
            "image": "flow:latest",
            "name": "my-flow-container",
            "environment": {"ENV_VAR1": "value1"},
            "volumes": {"/host/path": "/container/path"},
            "ports": {"8080": 8080},
        }
    )
    assert req.ports == {"8080": 8080}


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"name": "x"}, "image"),
        ({"image": 5}, "image"),
        ({"image": "flow:latest", "name": "-bad"}, "name"),
        ({"image": "flow:latest", "ports": {"8080": "8080"}}, "ports.8080"),
        ({"image": "flow:latest", "ports": {"http": 8080}}, "ports"),
        ({"image": "flow:latest", "ports": {"8080": 70000}}, "ports.8080"),
        ({"image": "flow:latest", "environment": {"1X": "a"}}, "environment"),
        ({"image": "flow:latest", "volumes": {"relative": "/x"}}, "volumes.relative.[key]"),
        ({"image": "flow:latest", "volumes": {"/a/../etc": "/x"}}, "volumes"),
        ({"image": "flow:latest", "enviroment": {}}, "enviroment"),
        ({"image": "flow:latest", "name": "x"}, "name"),  # Docker wants 2+ characters
        ({"image": "Flow:latest"}, "image"),
        ({"image": "flow:lätest"}, "image"),
        ({"image": "flow:" + "t" * 129}, "image"),
        ({"image": "flow:latest", "code_path": "/a\x00b"}, "code_path"),
        ({"image": "flow:latest", "command": ["sh", "a\x00"]}, "command.1"),
        ({"image": "flow:latest", "environment": {"A": "a\x00"}}, "environment"),
        ({"image": "flow:latest", "memory_limit": True}, "memory_limit"),
    ],
)
def test_invalid_create_requests_name_the_field(bad, field):
    with pytest.raises(ValidationError) as info:
        CreateContainer.model_validate(bad)
    error = from_validation(info.value)
    assert error.error_type == "validation_error" and error.details["field"] == field


@pytest.mark.parametrize(
    "image", ["flow", "flow:V1.2_x", "localhost:5000/team/flow:1", "a@sha256:" + "0" * 64, "registry.example.com/a/b-c__d.e:latest"]
)
def test_image_references_follow_dockers_grammar(image):
    assert CreateContainer.model_validate({"image": image}).image == image


@pytest.mark.parametrize(
    "message,problem",
    [
        ({"command": "flow.reload", "revision": "x"}, "reserved"),
        ({"x": float("nan")}, "plain JSON"),
        ({"x": b"bytes"}, "plain JSON"),
        ({"x": "é" * 600_000}, "larger than"),  # 1.2 MB as UTF-8
    ],
)
def test_messages_are_plain_bounded_json_and_not_control_commands(message, problem):
    with pytest.raises(ValidationError) as info:
        SendMessage.model_validate({"container_id": "abc", "message": message})
    error = from_validation(info.value)
    assert error.details["field"] == "message" and problem in error.message


def test_a_name_may_not_look_like_a_managed_id():
    """References try ids first: a name equal to another container's id would resolve to that one."""
    with pytest.raises(ValidationError) as info:
        CreateContainer.model_validate({"image": "flow:latest", "name": "0123456789ab"})
    error = from_validation(info.value)
    assert error.details["field"] == "name" and "container id" in error.message
    for fine in ("0123456789abc", "0123456789a", "0123456789AB", "flow-0123456789ab", "g123456789ab"):
        assert CreateContainer.model_validate({"image": "flow:latest", "name": fine}).name == fine


def test_references_are_ids_or_names():
    assert ContainerRef.model_validate({"container_id": "abc123def456"}).container_id == "abc123def456"
    for bad in ("", "a b", "../x", "x" * 129, "-a"):
        with pytest.raises(ValidationError):
            ContainerRef.model_validate({"container_id": bad})


def test_requests_must_be_objects():
    with pytest.raises(ValidationError):
        ContainerRef.model_validate("abc")
    with pytest.raises(ValidationError):
        SendMessage.model_validate({"container_id": "a", "message": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}})


def test_create_body_carries_labels_ports_and_hardening():
    r = Record(
        id="abc123def456",
        spec=ContainerSpec(image="flow:latest", name="a", ports={"8080": 18080}, environment={"A": "1"}),
        desired=DesiredState.RUNNING,
        generation=1,
        created_at=0,
    )
    body = docker_create_body(r, ContainerDefaults())
    assert body["Labels"]["io.kawaflow.flow-manager.container-id"] == "abc123def456"
    assert body["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    assert "A=1" in body["Env"] and "no-new-privileges" in body["HostConfig"]["SecurityOpt"]
    host = body["HostConfig"]
    assert host["Privileged"] is False and host["IpcMode"] == "private"
    assert not {"NetworkMode", "PidMode", "UTSMode", "UsernsMode", "Devices"} & set(host)  # Docker's own
    # capabilities: an allowlist, Docker's default set without MKNOD, NET_RAW, AUDIT_WRITE, SETFCAP, SETPCAP, SYS_CHROOT
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "NET_BIND_SERVICE",
    ]
    assert host["Memory"] == host["MemorySwap"] == 1 << 30 and host["PidsLimit"] == 512


def test_requested_limits_replace_the_defaults():
    r = Record(
        id="abc123def456",
        spec=ContainerSpec(image="flow:latest", name="a", memory_limit=64 << 20, pids_limit=20),
        desired=DesiredState.RUNNING,
        generation=1,
        created_at=0,
    )
    host = docker_create_body(r, ContainerDefaults(memory_limit=256 << 20, pids_limit=100))["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (64 << 20, 64 << 20, 20)
    r = Record(id="abc123def456", spec=ContainerSpec(image="flow:latest", name="a"), desired=DesiredState.RUNNING, generation=1, created_at=0)
    host = docker_create_body(r, ContainerDefaults(memory_limit=256 << 20, pids_limit=100))["HostConfig"]
    assert (host["Memory"], host["PidsLimit"]) == (256 << 20, 100)


def test_docker_times_and_uptime():
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("2025-07-21T10:30:00.123456789Z") == pytest.approx(1753093800.123456)
    assert format_uptime(630) == "0:10:30" and format_uptime(90061) == "25:01:01"


def test_resource_usage_like_docker_stats():
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {"usage": 1000, "limit": 4000, "stats": {"total_inactive_file": 200}},
        "networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 7}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 3}, {"op": "Write", "value": 4}]},
    }
    usage = resource_usage(stats, "t")
    assert usage == {
        "cpu_percent": 40.0,
        "memory_usage": 800,
        "memory_limit": 4000,
        "memory_percent": 20.0,
        "network_rx_bytes": 5,
        "network_tx_bytes": 7,
        "disk_read_bytes": 3,
        "disk_write_bytes": 4,
        "timestamp": "t",
    }


def test_framing_round_trip_and_limits():
    frame = framing.encode({"command": "ping", "data": "é"})
    assert framing.decode(frame[4:]) == {"command": "ping", "data": "é"}
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    with pytest.raises(framing.FrameError):
        framing.decode(b"[1,2]")
    with pytest.raises(framing.FrameError):
        framing.decode(b"\xff\xfe")
    with pytest.raises(framing.FrameError):
        framing.encode({"x": "a" * 100}, max_size=10)
