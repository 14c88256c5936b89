"""Containers labelled for this manager that no record wants: reported once, removed after a grace period.

The grace period covers a client's intent still on its way (and an operator who wants to look before
it goes); the decision is the planner's (plan_orphan), the removal and its report are here. The report
is an `activity_log` entry, which reaches only the clients connected at that moment (none, for the
orphans found at start-up), so every report is also kept (`reports()`, shown by `get_metrics`): the
pending ones until removed or claimed, the last REMOVED_KEPT removed ones with when they went.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import asdict, dataclass
from typing import Protocol

from controller.events import Activity, EventSink
from controller.observed import Observed
from controller.planner import Plan, plan_orphan

log = logging.getLogger("flow_manager.controller")
REMOVED_KEPT = 20  # removed orphans still shown by reports()


@dataclass
class OrphanReport:
    container_id: str
    names: list[str]
    docker_ids: list[str]
    found_at: float
    remove_at: float
    removed_at: float | None = None


class OrphanDocker(Protocol):
    async def observe(self, container_id: str) -> list[Observed]: ...
    async def remove(self, docker_id: str) -> None: ...


class Orphans:
    def __init__(self, docker: OrphanDocker, sink: EventSink, grace: float = 60.0) -> None:
        self.docker, self.sink, self.grace = docker, sink, grace
        self.found: dict[str, OrphanReport] = {}  # managed id -> its report, from when first seen without a record
        self.removed: collections.deque[OrphanReport] = collections.deque(maxlen=REMOVED_KEPT)

    def claimed(self, key: str) -> None:
        """The key has a record (again): not an orphan."""
        self.found.pop(key, None)

    def reports(self) -> list[dict[str, object]]:
        """Every pending orphan, then the last removed ones (oldest first): for clients that connect later."""
        return [asdict(report) for report in (*self.found.values(), *self.removed)]

    async def collect(self, key: str) -> Plan:
        """Report a new orphan, remove one whose grace is over; the plan says when to look again or forget."""
        observed = await self.docker.observe(key)
        now = time.time()
        if observed and key not in self.found:
            names = sorted({o.name for o in observed})
            report = self.found[key] = OrphanReport(key, names, [o.docker_id for o in observed], now, now + self.grace)
            self.sink.publish(
                Activity(
                    "container_error",
                    key,
                    f"Container {', '.join(names)} is labelled as managed by this manager but has no record; it will be removed in {self.grace:g} s",
                    {"reason": "orphan", "names": names, "docker_ids": report.docker_ids, "remove_at": report.remove_at},
                )
            )
        pending = self.found.get(key)
        decided = plan_orphan(observed, now=now, found_at=pending.found_at if pending is not None else now, grace=self.grace)
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
            done = self.found.pop(key, None)
            if done is not None and decided.actions:
                done.removed_at = time.time()
                self.removed.append(done)
        return decided
