"""Deciding what to do: a pure function from (desired record, observed containers) to a plan.

Nothing here talks to Docker or reads a clock: `now` and the crash back-off
deadline come in as arguments, so every decision is unit-testable. Applying a
plan is controller.applier's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from controller.observed import Observed
from store.records import DesiredState, Record, RestartTarget


class Act(str, Enum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    UNPAUSE = "unpause"
    REMOVE = "remove"
    REPLACE = "replace"  # create the new container under a temporary name, then remove the old one, then rename
    RENAME = "rename"
    DEPLOY = "deploy"  # copy the desired code revision in, and reload it if the runtime is up


@dataclass(frozen=True)
class Action:
    act: Act
    docker_id: str | None = None  # None for CREATE, and for actions on the container CREATE makes
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    waiting_reason: str | None = None
    forget: bool = False  # the record is fully deleted and may leave the store

    @property
    def idle(self) -> bool:
        return not self.actions and not self.forget


def primary_of(observed: Sequence[Observed], desired_hash: str) -> Observed | None:
    """The container to keep when Docker has several for one record (a crash mid-create or mid-replace)."""
    if not observed:
        return None
    return max(observed, key=lambda o: (o.spec_hash == desired_hash, o.running, o.created_at or 0.0))


def plan_orphan(observed: Sequence[Observed], *, now: float, found_at: float, grace: float) -> Plan:
    """A container labelled for this manager with no record: removed once the grace period is over.

    The grace period covers a client's intent that is still on its way (and an
    operator who wants to look before it goes).
    """
    if not observed:
        return Plan(forget=True)
    if now < found_at + grace:
        return Plan(requeue_after=found_at + grace - now, waiting_reason="OrphanGracePeriod")
    return Plan(actions=tuple(Action(Act.REMOVE, o.docker_id, "orphan") for o in observed), forget=True)


def restart_binding(record: Record, primary: Observed | None) -> RestartTarget | None:
    """The binding a restart request needs before planning: the newest request, not bound yet, ends the run
    Docker has now (None when nothing needs binding). See RestartTarget."""
    if not record.restart_requests:
        return None
    if record.restart_target is not None and record.restart_target.request == record.restart_requests:
        return None
    return RestartTarget(record.restart_requests, primary.docker_id if primary else None, primary.started_at if primary else None)


def plan(
    record: Record | None,
    observed: Sequence[Observed],
    *,
    now: float,
    desired_hash: str,
    restart_not_before: float | None = None,
    running_revision: str | None = None,
) -> Plan:
    """`desired_hash` is the hash of the whole create body the record asks for (the label a container
    must carry, else it is recreated); `running_revision` the code revision the current container is
    known to have. A restart request must be bound (restart_binding) first: the run it names is restarted,
    any other run means it is done."""
    if record is None:
        return Plan()  # no record: see plan_orphan, which the reconciler applies with its grace period
    if record.desired is DesiredState.DELETED:
        return Plan(actions=tuple(Action(Act.REMOVE, o.docker_id, "deleted") for o in observed), forget=True)

    primary = primary_of(observed, desired_hash)
    actions = [Action(Act.REMOVE, o.docker_id, "duplicate") for o in observed if o is not primary]
    wants_running = record.desired is DesiredState.RUNNING

    if primary is None or primary.spec_hash != desired_hash:
        # Create before delete: if the new configuration cannot be created, the old container keeps running.
        if primary is None:
            actions.append(Action(Act.CREATE, reason="missing"))
        else:
            actions.append(Action(Act.REPLACE, primary.docker_id, "spec changed"))
        if record.code_revision is not None:
            actions.append(Action(Act.DEPLOY, reason="initial code"))
        if wants_running and restart_not_before is not None and now < restart_not_before:
            # Removed (or found changed) during a crash back-off: made again at once, started at the deadline, as
            # kubelet does; the back-off belongs to the managed container, whichever Docker container it is.
            return Plan(actions=tuple(actions), requeue_after=restart_not_before - now, waiting_reason="CrashLoopBackOff")
        if wants_running:
            actions.append(Action(Act.START, reason="desired running"))
        return Plan(actions=tuple(actions))

    if primary.name != record.spec.name:  # a replacement interrupted before its rename
        actions.append(Action(Act.RENAME, primary.docker_id, "name"))

    if record.code_revision is not None and running_revision != record.code_revision:
        actions.append(Action(Act.DEPLOY, primary.docker_id, "code revision"))
    if wants_running:
        if primary.paused:
            actions.append(Action(Act.UNPAUSE, primary.docker_id, "desired running"))
        elif primary.running:
            target = record.restart_target if record.restart_requests else None
            if target is not None and target.request == record.restart_requests and primary.run_key == target.run_key:
                actions.append(Action(Act.RESTART, primary.docker_id, "restart requested"))
        elif restart_not_before is not None and now < restart_not_before:
            return Plan(actions=tuple(actions), requeue_after=restart_not_before - now, waiting_reason="CrashLoopBackOff")
        else:
            actions.append(Action(Act.START, primary.docker_id, "desired running"))
    elif record.desired is DesiredState.STOPPED:
        if primary.running or primary.paused or primary.status == "restarting":
            actions.append(Action(Act.STOP, primary.docker_id, "desired stopped"))
    return Plan(actions=tuple(actions))
