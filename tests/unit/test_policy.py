"""The request policy, one rule at a time, against real paths and symlinks in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.policy import ALWAYS_FORBIDDEN, PolicyViolation, RequestPolicy, normalise_image
from api.schemas import CreateContainer


def create(**fields: object) -> CreateContainer:
    return CreateContainer.model_validate({"image": "flow:latest", **fields})


def refused(policy: RequestPolicy, request: CreateContainer) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        policy.admit_create(request)
    return info.value


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "allowed" / "data").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "allowed" / "escape").symlink_to(tmp_path / "outside")  # a symlink out of the root
    (tmp_path / "allowed" / "inner").symlink_to(tmp_path / "allowed" / "data")  # one that stays inside
    (tmp_path / "allowed" / "to-state").symlink_to(tmp_path / "state")
    return tmp_path


def test_the_default_policy_allows_a_plain_local_flow():
    admitted = RequestPolicy.build().admit_create(create(name="ok", environment={"A": "1"}, ports={"8080": 18080}))
    assert admitted.volumes == {} and admitted.code_path is None


def test_volumes_are_refused_by_default_even_harmless_ones(tree: Path):
    violation = refused(RequestPolicy.build(), create(volumes={str(tree / "allowed" / "data"): "/data"}))
    assert violation.field == f"volumes.{tree / 'allowed' / 'data'}" and "not allowed" in violation.message


def test_volumes_under_an_allowed_root_bind_their_real_path(tree: Path):
    policy = RequestPolicy.build(volume_roots=[str(tree / "allowed")])
    admitted = policy.admit_create(create(volumes={str(tree / "allowed" / "inner"): "/data", str(tree / "allowed" / "new-dir"): "/new"}))
    assert admitted.volumes == {str(tree / "allowed" / "data"): "/data", str(tree / "allowed" / "new-dir"): "/new"}


@pytest.mark.parametrize("relative", ["outside", "allowed/escape", "allowed/escape/sub", "allowed/to-state", "state"])
def test_paths_that_resolve_outside_the_roots_or_into_forbidden_places_are_refused(tree: Path, relative: str):
    policy = RequestPolicy.build(volume_roots=[str(tree / "allowed"), str(tree / "state")], forbidden=[str(tree / "state")])
    host = str(tree / relative)
    violation = refused(policy, create(volumes={host: "/data"}))
    assert violation.field == f"volumes.{host}"


def test_double_slashes_and_dots_are_normalised_before_the_check(tree: Path):
    policy = RequestPolicy.build(volume_roots=[str(tree / "allowed")])
    host = f"{tree}//allowed/./data/"
    assert policy.admit_create(create(volumes={host: "/d"})).volumes == {str(tree / "allowed" / "data"): "/d"}


@pytest.mark.parametrize(
    "host",
    ["/", "/proc", "/proc/1/root", "/sys/kernel", "/etc", "/etc/shadow", "/run", "/var/run/docker.sock", "/run/docker.sock", "/var/run", "/dev/sda"],
)
def test_the_host_itself_is_never_mountable_even_when_everything_is_allowed(host: str):
    policy = RequestPolicy.build(volume_roots=["/"])
    assert refused(policy, create(volumes={host: "/x"})).field == f"volumes.{host}"


def test_the_managers_own_directories_and_their_parents_are_never_mountable(tree: Path):
    sockets = tree / "allowed" / "sockets"
    policy = RequestPolicy.build(volume_roots=[str(tree)], forbidden=[str(sockets)])
    for host in (sockets, sockets / ".links" / "abc", tree / "allowed"):  # inside, or containing it
        assert refused(policy, create(volumes={str(host): "/x"})).field == f"volumes.{host}"
    assert policy.admit_create(create(volumes={str(tree / "outside"): "/x"})).volumes


def test_mount_targets_cannot_hide_the_link_or_repeat(tree: Path):
    policy = RequestPolicy.build(volume_roots=[str(tree)])
    for target in ("/run/flow", "/run/flow/x", "/run", "/"):
        assert "link" in refused(policy, create(volumes={str(tree / "outside"): target})).message
    twice = create(volumes={str(tree / "outside"): "/data", str(tree / "allowed" / "data"): "/data/"})
    assert "already a mount target" in refused(policy, twice).message
    same_source = create(volumes={str(tree / "allowed" / "data"): "/a", str(tree / "allowed" / "inner"): "/b"})
    assert "already mounted" in refused(policy, same_source).message


def test_images_must_match_a_pattern():
    policy = RequestPolicy.build(image_patterns=("flow:*", "myorg/*"))
    for image in ("flow:latest", "flow", "myorg/tool:1", "myorg/tool"):
        policy.admit_create(create(image=image))
    for image in ("alpine", "flowx:1", "evil/myorg/x", "docker.io/myorg/x"):
        assert refused(policy, create(image=image)).field == "image"
    assert normalise_image("localhost:5000/a") == "localhost:5000/a:latest"
    assert normalise_image("a@sha256:" + "0" * 64) == "a@sha256:" + "0" * 64


def test_host_ports_stay_in_range_and_off_the_managers_port():
    policy = RequestPolicy.build(port_range=(20000, 20010), reserved_ports=frozenset({20005}))
    policy.admit_create(create(ports={"80": 20000, "81/udp": 20010}))
    for port in (19999, 20011, 80, 20005):
        assert refused(policy, create(ports={"8080": port})).field == "ports.8080"


def test_limits_may_be_lowered_but_not_raised_past_the_maximum():
    policy = RequestPolicy.build(max_memory=256 << 20, max_pids=100)
    policy.admit_create(create(memory_limit=64 << 20, pids_limit=10))
    policy.admit_create(create(memory_limit=256 << 20, pids_limit=100))
    assert refused(policy, create(memory_limit=(256 << 20) + 1)).field == "memory_limit"
    assert refused(policy, create(pids_limit=101)).field == "pids_limit"


def test_code_path_only_under_a_code_root(tree: Path):
    assert refused(RequestPolicy.build(), create(code_path=str(tree / "allowed" / "data"))).field == "code_path"
    policy = RequestPolicy.build(code_roots=[str(tree / "allowed")], forbidden=[str(tree / "state")])
    assert policy.code_path(str(tree / "allowed" / "inner")) == str(tree / "allowed" / "data")
    for bad in ("allowed/escape", "outside", "allowed/to-state"):
        with pytest.raises(PolicyViolation) as info:
            policy.code_path(str(tree / bad))
        assert info.value.field == "code_path"
    with pytest.raises(PolicyViolation):
        RequestPolicy.build(code_roots=["/"]).code_path("/etc")


def test_forbidden_places_are_compared_as_real_paths(tmp_path: Path):
    link = tmp_path / "sock-link"
    link.symlink_to("/var/run/docker.sock")
    policy = RequestPolicy.build(volume_roots=[str(tmp_path)])
    assert refused(policy, create(volumes={str(link): "/x"})).field == f"volumes.{link}"
    assert os.path.realpath("/var/run/docker.sock") in RequestPolicy.build().forbidden
    assert set(map(os.path.realpath, ALWAYS_FORBIDDEN)) <= set(RequestPolicy.build().forbidden)


# -- bind sources never nest (issue 16: a container swapping a directory on another bind source's path) ----
def test_bind_sources_of_one_request_may_not_nest(tree: Path):
    (tree / "allowed" / "data" / "b").mkdir()
    policy = RequestPolicy.build(volume_roots=[str(tree / "allowed")])
    outer, inner = tree / "allowed" / "data", tree / "allowed" / "data" / "b"
    violation = refused(policy, create(volumes={str(outer): "/a", str(inner): "/b"}))
    assert violation.field == f"volumes.{inner}" and f"inside {outer}" in violation.message
    violation = refused(policy, create(volumes={str(inner): "/b", str(tree / "allowed" / "inner"): "/a"}))
    assert violation.field == f"volumes.{tree / 'allowed' / 'inner'}" and f"around {inner}" in violation.message


def test_bind_sources_may_not_nest_in_or_around_another_containers(tree: Path):
    (tree / "allowed" / "data" / "b").mkdir()
    (tree / "allowed" / "data-sibling").mkdir()
    policy = RequestPolicy.build(volume_roots=[str(tree / "allowed")])
    bound = {str(tree / "allowed" / "data"): "0123456789ab"}
    for host in (tree / "allowed" / "data" / "b", tree / "allowed", tree / "allowed" / "inner" / "b"):
        violation = refused_with(policy, create(volumes={str(host): "/x"}), bound)
        assert violation.field == f"volumes.{host}" and "0123456789ab" in violation.message, violation.message
    for host in (tree / "allowed" / "data-sibling", tree / "allowed" / "data", tree / "allowed" / "inner"):
        policy.admit_create(create(volumes={str(host): "/x"}), bound)  # a sibling, or the very same directory
    admitted = policy.admit_create(create(volumes={str(tree / "allowed" / "inner" / "b"): "/x"}))
    with pytest.raises(PolicyViolation):  # the re-check right before the record is written
        RequestPolicy.no_nesting(admitted.requested, bound)


def refused_with(policy: RequestPolicy, request: CreateContainer, bound: dict[str, str]) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        policy.admit_create(request, bound)
    return info.value
