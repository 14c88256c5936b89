"""Bind sources checked where they are used: the walk that never follows a symlink, the guard's rules,
and the applier calling it before every Docker call that binds (issue 16, hole 1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from controller.applier import Applier
from controller.bind_sources import BIND_SOURCE_CHANGED, BIND_SOURCE_NOT_ALLOWED, BindGuard, BindSourceRefused, walk
from controller.container_config import ContainerDefaults
from controller.planner import Act, Action
from store.records import ContainerSpec, DesiredState, Record


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    (tmp_path / "root" / "file.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def depth(path: Path) -> int:
    return len(path.parts) - 1


def test_a_plain_path_passes(root: Path):
    assert walk(str(root / "a" / "b")) is None
    assert walk(str(root / "file.txt")) is None  # a file may be bound too


@pytest.mark.parametrize("where", ["leaf", "parent"])
def test_a_symlink_in_any_component_is_refused(root: Path, where: str):
    swapped = root / "a" / "b" if where == "leaf" else root / "a"
    swapped.rename(swapped.with_name("kept"))
    swapped.symlink_to("/")
    why = walk(str(root / "a" / "b"))
    assert why is not None and f"{swapped} is a symlink" in why, why


def test_a_symlink_to_a_place_inside_the_root_is_refused_too(root: Path):
    (root / "alias").symlink_to(root / "a")
    assert "is a symlink" in str(walk(str(root / "alias" / "b")))


def test_missing_components_are_created_below_the_root_only(root: Path):
    assert walk(str(root / "new" / "deeper"), create_from=depth(root)) is None
    assert (root / "new" / "deeper").is_dir() and not (root / "new" / "deeper").is_symlink()
    assert stat.S_IMODE((root / "new").stat().st_mode) & 0o022 == 0
    missing_root = root.parent / "no-root"
    assert "does not exist" in str(walk(str(missing_root / "x"), create_from=depth(missing_root)))
    assert not missing_root.exists()
    assert "does not exist" in str(walk(str(root / "other")))  # no creation asked for


def test_a_device_node_is_refused(root: Path):
    if os.geteuid() != 0:
        pytest.fail("this test creates a device node: run it as root, as the integration tests are")
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    assert "is a device" in str(walk(str(root / "null")))


def test_odd_paths_are_refused(root: Path):
    for path in ("relative/path", f"{root}/a/../a", f"{root}//a", f"{root}/a/"):
        assert walk(path) is not None, path


def test_the_guard_applies_the_current_roots_and_forbidden_places(root: Path):
    guard = BindGuard(roots=(str(root),), forbidden=(str(root / "a" / "b" / "state"),))
    assert guard.refusal(str(root / "a" / "c")) is None
    assert guard.refusal(str(root.parent / "outside"))[0] == BIND_SOURCE_NOT_ALLOWED
    assert guard.refusal(str(root / "a"))[0] == BIND_SOURCE_NOT_ALLOWED  # contains a forbidden place
    (root / "a" / "c").rmdir()
    (root / "a" / "c").symlink_to(root.parent / "outside")
    reason, why = guard.refusal(str(root / "a" / "c"))
    assert reason == BIND_SOURCE_CHANGED and "symlink" in why
    nesting = guard.refusal(str(root / "a"), {str(root / "a" / "b"): "0123456789ab"})
    assert nesting is not None and nesting[0] == BIND_SOURCE_NOT_ALLOWED and "0123456789ab" in nesting[1]
    assert guard.refusal(str(root / "file.txt"), {str(root / "file.txt"): "0123456789ab"}) is None  # shared
    with pytest.raises(BindSourceRefused) as info:
        guard.verify({str(root / "a" / "c"): "/data"}, "start_container")
    failure = info.value
    assert failure.error_type == "validation_error" and failure.permanent
    assert failure.details == {
        "operation": "start_container",
        "reason": BIND_SOURCE_CHANGED,
        "host_path": str(root / "a" / "c"),
        "container_path": "/data",
    }


# -- the applier checks before every Docker call that binds ----------------------------------------
class FakeDocker:
    """Records which Docker calls the applier made."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def create(self, body: dict[str, Any], name: str) -> str:
        self.calls.append("create")
        return "new-docker-id"

    async def start(self, docker_id: str) -> None:
        self.calls.append("start")

    async def stop(self, docker_id: str) -> None:
        self.calls.append("stop")

    async def remove(self, docker_id: str) -> None:
        self.calls.append("remove")

    async def rename(self, docker_id: str, name: str) -> None:
        self.calls.append("rename")


class FakeDeployer:
    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker

    async def deploy(self, record: Record, docker_id: str) -> None:
        self.docker.calls.append("put_archive")

    def forget(self, docker_id: str) -> None:
        pass


def record_binding(path: Path) -> Record:
    return Record(
        id="0123456789ab",
        spec=ContainerSpec(image="flow:latest", name="x", volumes={str(path): "/v"}),
        desired=DesiredState.RUNNING,
        generation=1,
        created_at=0.0,
        code_revision="r1",
    )


async def nothing(docker_id: str) -> None:
    return None


class Acknowledged(list[str]):
    """The applier's acknowledge callback (docker id, whether the container stays), recording the ids."""

    async def __call__(self, docker_id: str, lasting: bool) -> None:
        self.append(docker_id)


@pytest.mark.parametrize("act", [Act.CREATE, Act.START, Act.RESTART, Act.REPLACE, Act.DEPLOY])
async def test_the_applier_refuses_before_docker_binds_a_swapped_source(root: Path, act: Act):
    docker = FakeDocker()
    applier = Applier(
        docker,
        ContainerDefaults(),
        deployer=FakeDeployer(docker),  # type: ignore[arg-type]
        binds=BindGuard(roots=(str(root),), forbidden=()),
    )
    record = record_binding(root / "a" / "b")
    target = None if act is Act.CREATE else "old-docker-id"
    acknowledged = Acknowledged()
    await applier.apply(record, Action(act, target), target, acknowledged, nothing)  # fine as it is
    assert docker.calls, act
    docker.calls.clear()
    acknowledged.clear()
    (root / "a" / "b").rename(root / "a" / "kept")
    (root / "a" / "b").symlink_to("/")
    with pytest.raises(BindSourceRefused) as info:
        await applier.apply(record, Action(act, target), target, acknowledged, nothing)
    assert info.value.details["reason"] == BIND_SOURCE_CHANGED
    assert docker.calls == [] and acknowledged == [], "nothing reached Docker, nothing was stopped"


async def test_a_restart_refused_after_its_stop_does_not_start(root: Path):
    docker = FakeDocker()
    applier = Applier(docker, ContainerDefaults(), binds=BindGuard(roots=(str(root),), forbidden=()))  # type: ignore[arg-type]
    record = record_binding(root / "a" / "b")

    async def swap_while_stopped(docker_id: str) -> None:
        (root / "a" / "b").rename(root / "a" / "kept")
        (root / "a" / "b").symlink_to("/")

    with pytest.raises(BindSourceRefused):
        await applier.apply(record, Action(Act.RESTART, "id"), "id", Acknowledged(), swap_while_stopped)
    assert docker.calls == ["stop"]


async def test_a_start_is_refused_when_another_records_source_nests(root: Path):
    """Records admitted before nesting was refused (an older journal) do not start nested either."""
    docker = FakeDocker()
    others = {str(root / "a"): "fedcba987654", str(root / "a" / "b"): "0123456789ab"}
    applier = Applier(
        docker,
        ContainerDefaults(),
        binds=BindGuard(  # type: ignore[arg-type]
            roots=(str(root),), forbidden=(), bound=lambda: others
        ),
    )
    with pytest.raises(BindSourceRefused) as info:
        await applier.apply(record_binding(root / "a" / "b"), Action(Act.START, "id"), "id", Acknowledged(), nothing)
    assert info.value.details["reason"] == BIND_SOURCE_NOT_ALLOWED and "fedcba987654" in info.value.message
    assert docker.calls == []
