"""The planner is the heart of the controller: every decision, no Docker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller import planner
from controller.container_config import ContainerDefaults, config_hash, docker_create_body
from controller.observed import Observed
from controller.planner import Act, plan_orphan
from store import ContainerSpec, DesiredState, Record
from store.records import RestartTarget

SPEC = ContainerSpec(image="flow:latest", name="a")
HASH = "body-hash-0"  # what the records below ask for, unless a test says otherwise


def plan(record: Record | None, observed: list[Observed], **kwargs) -> planner.Plan:
    return planner.plan(record, observed, **{"desired_hash": HASH, **kwargs})


def record(desired: DesiredState, spec: ContainerSpec = SPEC, restart_of: Observed | None = None) -> Record:
    """`restart_of`: a client asked for a restart, which the controller bound to that run."""
    target = RestartTarget(1, restart_of.docker_id, restart_of.started_at) if restart_of is not None else None
    return Record(
        id="abc123def456",
        spec=spec,
        desired=desired,
        generation=2,
        created_at=0.0,
        restart_requests=1 if restart_of is not None else 0,
        restart_target=target,
    )


def observed(
    status: str = "running", spec_hash: str | None = None, docker_id: str = "d1", started: float | None = 100.0, created: float = 1.0, name: str = "a"
) -> Observed:
    return Observed(
        docker_id=docker_id,
        name=name,
        managed_id="abc123def456",
        spec_hash=spec_hash if spec_hash is not None else HASH,
        status=status,
        running=status == "running",
        paused=status == "paused",
        exit_code=0,
        oom_killed=False,
        error="",
        pid=1,
        started_at=started,
        finished_at=None,
        created_at=created,
        health=None,
        image="flow:latest",
    )


def acts(p) -> list[tuple[Act, str | None]]:
    return [(a.act, a.docker_id) for a in p.actions]


def test_missing_container_is_created_and_started_when_desired_running():
    assert acts(plan(record(DesiredState.RUNNING), [], now=0)) == [(Act.CREATE, None), (Act.START, None)]


def test_missing_container_is_only_created_when_desired_created():
    assert acts(plan(record(DesiredState.CREATED), [], now=0)) == [(Act.CREATE, None)]


@pytest.mark.parametrize(
    "desired,status,expected",
    [
        (DesiredState.RUNNING, "running", []),
        (DesiredState.RUNNING, "created", [(Act.START, "d1")]),
        (DesiredState.RUNNING, "exited", [(Act.START, "d1")]),
        (DesiredState.RUNNING, "paused", [(Act.UNPAUSE, "d1")]),
        (DesiredState.STOPPED, "running", [(Act.STOP, "d1")]),
        (DesiredState.STOPPED, "exited", []),
        (DesiredState.STOPPED, "created", []),
        (DesiredState.CREATED, "created", []),
    ],
)
def test_state_convergence(desired, status, expected):
    assert acts(plan(record(desired), [observed(status)], now=0)) == expected


def test_deleted_removes_every_container_and_forgets_the_record():
    p = plan(record(DesiredState.DELETED), [observed(docker_id="d1"), observed(docker_id="d2")], now=0)
    assert acts(p) == [(Act.REMOVE, "d1"), (Act.REMOVE, "d2")] and p.forget


def test_changed_spec_recreates():
    p = plan(record(DesiredState.RUNNING), [observed(spec_hash="stale")], now=0)
    assert acts(p) == [(Act.REPLACE, "d1"), (Act.START, None)], "create before delete, then start the new one"


def test_desired_hash_from_the_caller_decides_drift():
    current = observed(spec_hash="body-hash-1")
    assert acts(plan(record(DesiredState.RUNNING), [current], now=0, desired_hash="body-hash-1")) == []
    assert acts(plan(record(DesiredState.RUNNING), [current], now=0, desired_hash="body-hash-2")) == [(Act.REPLACE, "d1"), (Act.START, None)]


def test_drift_of_a_stopped_container_replaces_without_starting():
    assert acts(plan(record(DesiredState.STOPPED), [observed("exited", spec_hash="stale")], now=0)) == [(Act.REPLACE, "d1")]


def test_an_interrupted_replacement_is_finished():
    # Killed between create (temporary name) and rename: the new one wins, the old one goes, the name is fixed.
    old = observed(spec_hash="stale", docker_id="old", created=1.0)
    new = observed("created", docker_id="new", created=2.0, name="a.next-12345678")
    assert acts(plan(record(DesiredState.RUNNING), [old, new], now=0)) == [(Act.REMOVE, "old"), (Act.RENAME, "new"), (Act.START, "new")]


def test_an_orphan_is_kept_through_its_grace_period_then_removed():
    found = [observed(docker_id="x")]
    waiting = plan_orphan(found, now=10.0, found_at=0.0, grace=60.0)
    assert waiting.actions == () and waiting.requeue_after == 50.0 and not waiting.forget
    due = plan_orphan(found, now=60.0, found_at=0.0, grace=60.0)
    assert acts(due) == [(Act.REMOVE, "x")] and due.forget
    assert plan_orphan([], now=0.0, found_at=0.0, grace=60.0).forget


def test_duplicates_are_removed_keeping_the_running_one_with_the_current_spec():
    p = plan(
        record(DesiredState.RUNNING), [observed("exited", docker_id="old", created=5.0), observed("running", docker_id="keep", created=1.0)], now=0
    )
    assert acts(p) == [(Act.REMOVE, "old")]


def test_restart_request_restarts_the_run_it_was_bound_to_and_no_other():
    found = observed(started=100.0)
    assert acts(plan(record(DesiredState.RUNNING, restart_of=found), [found], now=200)) == [(Act.RESTART, "d1")]
    assert acts(plan(record(DesiredState.RUNNING, restart_of=found), [observed(started=160.0)], now=200)) == []
    recreated = observed(docker_id="d2", started=100.0)
    assert acts(plan(record(DesiredState.RUNNING, restart_of=found), [recreated], now=200)) == []


def test_a_restart_request_is_bound_to_the_run_docker_has_when_it_is_taken_up():
    asked = replace(record(DesiredState.RUNNING), restart_requests=1)
    found = observed(started=100.0)
    assert planner.restart_binding(asked, found) == RestartTarget(1, "d1", 100.0)
    assert planner.restart_binding(asked, None) == RestartTarget(1, None, None), "no container: nothing to end"
    bound = replace(asked, restart_target=RestartTarget(1, "d1", 100.0))
    assert planner.restart_binding(bound, observed(started=160.0)) is None, "bound once"
    assert planner.restart_binding(replace(bound, restart_requests=2), found) == RestartTarget(2, "d1", 100.0)
    assert planner.restart_binding(record(DesiredState.RUNNING), found) is None


def test_crash_back_off_holds_the_start_and_says_when_to_look_again():
    p = plan(record(DesiredState.RUNNING), [observed("exited")], now=100.0, restart_not_before=104.0)
    assert p.actions == () and p.requeue_after == pytest.approx(4.0) and p.waiting_reason == "CrashLoopBackOff"
    assert acts(plan(record(DesiredState.RUNNING), [observed("exited")], now=105.0, restart_not_before=104.0)) == [(Act.START, "d1")]


def test_a_container_removed_during_a_back_off_is_created_at_once_but_started_at_its_deadline():
    """As kubelet: a pod sandbox gone during CrashLoopBackOff is recreated, its container waits."""
    during = plan(record(DesiredState.RUNNING), [], now=100.0, restart_not_before=104.0)
    assert acts(during) == [(Act.CREATE, None)]
    assert during.requeue_after == pytest.approx(4.0) and during.waiting_reason == "CrashLoopBackOff"
    replaced = plan(record(DesiredState.RUNNING), [observed("exited", spec_hash="old")], now=100.0, restart_not_before=104.0)
    assert acts(replaced) == [(Act.REPLACE, "d1")] and replaced.waiting_reason == "CrashLoopBackOff"
    after = plan(record(DesiredState.RUNNING), [], now=105.0, restart_not_before=104.0)
    assert acts(after) == [(Act.CREATE, None), (Act.START, None)] and after.requeue_after is None
    created = plan(record(DesiredState.RUNNING), [observed("created", started=None)], now=105.0, restart_not_before=104.0)
    assert acts(created) == [(Act.START, "d1")], "the created container is started once the deadline passed"


def test_unknown_containers_are_left_alone():
    assert plan(None, [observed()], now=0).idle


def test_config_hash_covers_every_field_of_the_create_body():
    def body_hash(spec: ContainerSpec, defaults: ContainerDefaults = ContainerDefaults()) -> str:
        return config_hash(docker_create_body(record(DesiredState.RUNNING, spec), defaults))

    base = body_hash(SPEC)
    assert body_hash(ContainerSpec(image="flow:latest", name="a", environment={"A": "1"})) != base
    assert body_hash(ContainerSpec(image="flow:latest", name="a", ports={"80": 8080})) != base
    assert body_hash(ContainerSpec(image="flow:latest", name="a", memory_limit=64 << 20)) != base
    assert body_hash(SPEC, ContainerDefaults(stop_timeout=3)) != base, "the manager's own settings count too"
    assert body_hash(ContainerSpec(image="flow:latest", name="a")) == base


def test_a_restart_is_decided_from_dockers_clock_not_the_managers():
    """A remote engine whose clock lags an hour: the new run's StartedAt is still "before" the request."""
    manager_now = 1_000_000.0
    found = observed(started=manager_now - 3600.0)  # Docker's clock
    asked = record(DesiredState.RUNNING, restart_of=found)
    assert acts(plan(asked, [found], now=manager_now)) == [(Act.RESTART, "d1")]
    restarted = observed(started=manager_now - 3590.0)  # the run the restart made, by Docker's clock
    assert acts(plan(asked, [restarted], now=manager_now + 10)) == [], "restarted once, not at every reconcile"
