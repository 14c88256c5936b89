"""Containers labelled for this manager that no record wants: reported once, removed after a grace period.

The grace period covers a client's intent still on its way (and an operator who wants to look before
it goes); the decision is the planner's (plan_orphan), the removal and its report are here.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from controller.events import Activity, EventSink
from controller.observed import Observed
from controller.planner import Plan, plan_orphan

log = logging.getLogger("flow_manager.controller")


class OrphanDocker(Protocol):
    async def observe(self, container_id: str) -> list[Observed]: ...
    async def remove(self, docker_id: str) -> None: ...


class Orphans:
    def __init__(self, docker: OrphanDocker, sink: EventSink, grace: float = 60.0) -> None:
        self.docker, self.sink, self.grace = docker, sink, grace
        self.found: dict[str, float] = {}  # managed id -> when first seen without a record

    def claimed(self, key: str) -> None:
        """The key has a record (again): not an orphan."""
        self.found.pop(key, None)

    async def collect(self, key: str) -> Plan:
        """Report a new orphan, remove one whose grace is over; the plan says when to look again or forget."""
        observed = await self.docker.observe(key)
        now = time.time()
        if observed and key not in self.found:
            self.found[key] = now
            names = sorted({o.name for o in observed})
            self.sink.publish(
                Activity(
                    "container_error",
                    key,
                    f"Container {', '.join(names)} is labelled as managed by this manager but has no record; it will be removed in {self.grace:g} s",
                    {"reason": "orphan", "names": names, "docker_ids": [o.docker_id for o in observed], "remove_at": now + self.grace},
                )
            )
        decided = plan_orphan(observed, now=now, found_at=self.found.get(key, now), grace=self.grace)
        for action in decided.actions:
            await self.docker.remove(str(action.docker_id))
            gone = next(o for o in observed if o.docker_id == action.docker_id)
            log.warning("removed orphaned container %s (%s)", gone.name, gone.docker_id[:12])
            self.sink.publish(
                Activity(
                    "container_deleted",
                    key,
                    f"Orphaned container {gone.name} removed",
                    {"reason": "orphan", "name": gone.name, "docker_id": gone.docker_id, "image": gone.image},
                )
            )
        if decided.forget:
            self.found.pop(key, None)
        return decided
