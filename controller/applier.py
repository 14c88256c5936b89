"""Applying a plan: the side-effecting half of the planner/applier split.

Each action is one Docker call. Before the manager ends a run itself (stop,
restart, remove) it acknowledges that run, so the crash detector never
mistakes a requested stop for a crash.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from controller.container_config import ContainerDefaults, docker_create_body
from controller.docker_adapter import DockerAdapter
from controller.events import Activity
from controller.planner import Act, Action
from store.records import Record

ACTIVITY = {
    Act.CREATE: ("container_created", "created"),
    Act.START: ("container_started", "started"),
    Act.STOP: ("container_stopped", "stopped"),
    Act.RESTART: ("container_restarted", "restarted"),
    Act.UNPAUSE: ("container_started", "unpaused"),
}


class Applier:
    def __init__(self, docker: DockerAdapter, defaults: ContainerDefaults,
                 prepare_create: Callable[[Record], Awaitable[tuple[tuple[str, ...], dict[str, str]]]] | None = None,
                 after_create: Callable[[Record, str], Awaitable[None]] | None = None) -> None:
        self.docker = docker
        self.defaults = defaults
        # Hooks for the link layer: mounts/env a new container needs, and work
        # (like copying code in) between create and start.
        self.prepare_create = prepare_create
        self.after_create = after_create

    async def apply(self, record: Record, action: Action, target: str | None,
                    acknowledge: Callable[[str], None],
                    checkpoint: Callable[[str], Awaitable[None]]) -> tuple[str | None, Activity | None]:
        """Run one action; returns the docker id it produced or acted on, and its activity.

        `checkpoint` lets the reconciler observe between the two halves of a
        restart, so clients see both real transitions (running -> stopped -> running).
        """
        act = action.act
        if act is Act.CREATE:
            binds, env = await self.prepare_create(record) if self.prepare_create else ((), {})
            body = docker_create_body(record, self.defaults, binds, env)
            target = await self.docker.create(body, record.spec.name)
            if self.after_create:
                await self.after_create(record, target)
        elif target is None:
            raise ValueError(f"{act.value} needs a container")
        elif act is Act.START:
            await self.docker.start(target)
        elif act is Act.UNPAUSE:
            await self.docker.unpause(target)
        elif act is Act.STOP:
            acknowledge(target)
            await self.docker.stop(target)
        elif act is Act.RESTART:
            acknowledge(target)
            await self.docker.stop(target)
            await checkpoint(target)
            await self.docker.start(target)
        elif act is Act.REMOVE:
            acknowledge(target)
            await self.docker.remove(target)
            return target, None
        activity_type, verb = ACTIVITY[act]
        return target, Activity(activity_type, record.id, f"Container {record.spec.name} {verb}",
                                {"name": record.spec.name, "image": record.spec.image, "docker_id": target,
                                 "reason": action.reason})
