"""Applying a plan: the side-effecting half of the planner/applier split.

Each action is one Docker call (a restart is two, observed in between).
Before the manager ends a run itself (stop, restart, remove) it acknowledges
that run, so the crash detector never mistakes a requested stop for a crash.
A run whose container stays (stop, restart) is acknowledged durably, with the
record in the journal, before Docker is asked: a manager restarted in between
still knows it ended that run.
Before every Docker call that binds the record's volumes (create, start,
restart, recreate, and the archive copy of a code deploy) their host paths
are checked again (controller.bind_sources): Docker follows symlinks in a
bind source at each start, so a check made only when the request arrived
would not hold when the mount is made.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from controller import labels
from controller.adapters.docker import DockerAdapter
from controller.adapters.links import LinkManager
from controller.bind_sources import BindGuard
from controller.code_deploy import CodeDeployer
from controller.container_config import ContainerDefaults, docker_create_body
from controller.events import Activity
from controller.planner import Act, Action
from store import Record
from store.code import CODE_DIR

ACTIVITY = {
    Act.CREATE: ("container_created", "created"),
    Act.START: ("container_started", "started"),
    Act.STOP: ("container_stopped", "stopped"),
    Act.RESTART: ("container_restarted", "restarted"),
    Act.UNPAUSE: ("container_started", "unpaused"),
    Act.DEPLOY: ("container_updated", "updated"),
    Act.REPLACE: ("container_created", "recreated"),
    Act.RENAME: ("container_updated", "renamed"),
}


class Applier:
    def __init__(
        self,
        docker: DockerAdapter,
        defaults: ContainerDefaults,
        links: LinkManager | None = None,
        deployer: CodeDeployer | None = None,
        binds: BindGuard | None = None,
    ) -> None:
        self.docker, self.defaults, self.links, self.deployer = docker, defaults, links, deployer
        self.binds = binds

    async def _check_binds(self, record: Record, operation: str) -> None:
        """Refuse (BindSourceRefused, a permanent validation_error) rather than let Docker bind a path
        that no longer resolves, without symlinks, to what the policy admitted."""
        if self.binds is not None:
            await self.binds.check(record.id, record.spec.volumes, operation)

    def body(self, record: Record) -> dict[str, Any]:
        binds, env = self.links.inputs(record) if self.links else ((), {})
        return docker_create_body(record, self.defaults, binds, {**env, "FLOW_CODE_DIR": CODE_DIR})

    def desired_hash(self, record: Record) -> str:
        """The configuration hash a container of this record must carry, or it is recreated."""
        return str(self.body(record)["Labels"][labels.SPEC_HASH])

    async def apply(
        self,
        record: Record,
        action: Action,
        target: str | None,
        acknowledge: Callable[[str, bool], Awaitable[None]],
        checkpoint: Callable[[str], Awaitable[None]],
    ) -> tuple[str | None, Activity | None]:
        """Run one action; returns the docker id it produced or acted on, and its activity.

        `checkpoint` lets the reconciler observe between the two halves of a
        restart, so clients see both real transitions (running -> stopped -> running).
        `acknowledge(docker_id, lasting)` records that the manager ends that container's run; `lasting`
        when the container outlives the action, so the record must say so across a manager restart.
        """
        act = action.act
        details: dict[str, Any] = {}
        if act is Act.CREATE:
            await self._check_binds(record, "create_container")
            target = await self.docker.create(self.body(record), record.spec.name)
        elif target is None:
            raise ValueError(f"{act.value} needs a container")
        elif act is Act.DEPLOY:
            if self.deployer is None:
                raise ValueError("no code deployer configured")
            # Docker's archive API binds the container's volumes again (by host path) to extract into them
            await self._check_binds(record, "update_container")
            await self.deployer.deploy(record, target)
            if action.docker_id is None:
                return target, None  # initial code of a new container is part of its creation
        elif act is Act.REPLACE:
            await self._check_binds(record, "create_container")  # refused here: the old one keeps running
            body = self.body(record)
            old, temporary = target, f"{record.spec.name}.next-{body['Labels'][labels.SPEC_HASH][:8]}"
            target = await self.docker.create(body, temporary)  # fails here: the old one is untouched
            await acknowledge(old, False)
            await self.docker.remove(old)
            if self.deployer is not None:
                self.deployer.forget(old)
            await self.docker.rename(target, record.spec.name)
            details = {"replaced_docker_id": old}
        elif act is Act.RENAME:
            await self.docker.rename(target, record.spec.name)
        elif act is Act.START:
            await self._check_binds(record, "start_container")
            await self.docker.start(target)
        elif act is Act.UNPAUSE:
            await self.docker.unpause(target)
        elif act is Act.STOP:
            await acknowledge(target, True)
            await self.docker.stop(target)
        elif act is Act.RESTART:
            await self._check_binds(record, "restart_container")  # refused before anything is stopped
            await acknowledge(target, True)
            await self.docker.stop(target)
            await checkpoint(target)
            await self._check_binds(record, "restart_container")  # and again: the stop took a while
            await self.docker.start(target)
        elif act is Act.REMOVE:
            await acknowledge(target, False)
            await self.docker.remove(target)
            if self.deployer is not None:
                self.deployer.forget(target)
            return target, None
        activity_type, verb = ACTIVITY[act]
        details = {"name": record.spec.name, "image": record.spec.image, "docker_id": target, "reason": action.reason, **details}
        if act is Act.DEPLOY:
            details.update(code_revision=record.code_revision, code_path=record.code_path)
        return target, Activity(activity_type, record.id, f"Container {record.spec.name} {verb}", details)
