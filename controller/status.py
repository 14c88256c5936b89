"""Point-in-time status of managed containers, and the periodic status round.

Stats for many containers are fetched concurrently (Docker's stats call waits
about a second for a second CPU sample, so one-after-another would cost a
second per container).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from controller.cgroup_stats import CgroupStats
from controller.docker_adapter import DockerAdapter, DockerFailure
from controller.events import EventSink
from controller.observed import ABSENT, Observed
from controller.reconciler import UNKNOWN, Reconciler
from controller.stats import format_uptime, resource_usage
from store import MemoryStore, Record

log = logging.getLogger("flow_manager.status")


def iso_now() -> str:
    return iso(time.time())


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LinkState(Protocol):
    def connected(self, container_id: str) -> bool: ...
    def last_communication(self, container_id: str) -> float | None: ...
    def revision(self, container_id: str) -> str | None: ...


@dataclass(frozen=True)
class ContainerStatus:
    container_id: str
    name: str
    image: str
    desired: str
    docker_id: str | None
    state: str
    health: str
    socket_connected: bool
    uptime: str
    last_communication: float | None
    resource_usage: dict[str, Any]
    code_revision: str | None
    running_revision: str | None
    exit_code: int | None
    crash_count: int
    waiting_reason: str | None
    next_restart_at: float | None
    created_at: float
    ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    """One container's entry in a periodic status round."""

    status: ContainerStatus


class StatusReader:
    def __init__(self, store: MemoryStore, reconciler: Reconciler, docker: DockerAdapter,
                 links: LinkState | None = None, stats_concurrency: int = 64) -> None:
        self.store, self.reconciler, self.docker, self.links = store, reconciler, docker, links
        self._stats_slots = asyncio.Semaphore(stats_concurrency)
        self._cgroups = CgroupStats()

    async def _usage(self, observed: Observed | None) -> dict[str, Any]:
        if observed is None or not observed.running or not self.reconciler.engine.available:
            return resource_usage(None, iso_now())
        fast = await self._cgroups.usage(observed.docker_id, observed.pid, iso_now())
        if fast is not None:
            return fast
        try:
            async with self._stats_slots:
                stats = await self.docker.stats(observed.docker_id)
        except DockerFailure as failure:
            log.debug("stats of %s unavailable: %s", observed.docker_id, failure.message)
            stats = None
        stamp = iso_now()
        return resource_usage(stats, stamp)

    def forget_stats(self, live_docker_ids: set[str]) -> None:
        self._cgroups.forget(live_docker_ids)

    async def status(self, record: Record) -> ContainerStatus:
        known = self.reconciler.known(record.id)
        usage = await self._usage(known.observed if known is not None else None)
        # State is read after the (possibly slow) stats so the report is never older than its numbers.
        observed = await self.reconciler.refresh(record.id)
        engine_up = self.reconciler.engine.available
        if (known is None or known.observed is None) and observed is not None and observed.running:
            usage = await self._usage(observed)  # first look at this container: no earlier id to sample
        if observed is None or not observed.running or not engine_up:
            usage = resource_usage(None, usage["timestamp"])
        now = time.time()
        running = observed is not None and observed.running
        connected = bool(self.links and self.links.connected(record.id)) and running
        return ContainerStatus(
            container_id=record.id, name=record.spec.name, image=record.spec.image,
            desired=record.desired.value,
            docker_id=observed.docker_id if observed else None,
            state=(observed.api_state if observed else ABSENT) if engine_up else UNKNOWN,
            health=(self.reconciler.health_of(record.id, observed) or "none") if engine_up else "unknown",
            socket_connected=connected,
            uptime=format_uptime(now - observed.started_at) if running and observed and observed.started_at else "0:00:00",
            last_communication=self.links.last_communication(record.id) if self.links else None,
            resource_usage=usage,
            code_revision=record.code_revision,
            running_revision=self.links.revision(record.id) if self.links else None,
            exit_code=observed.exit_code if observed and not observed.running and observed.started_at else None,
            crash_count=known.crash_count if known else 0,
            waiting_reason=known.waiting_reason if known else None,
            next_restart_at=known.restart_not_before if known and known.waiting_reason else None,
            created_at=record.created_at,
            ports=dict(record.spec.ports),
        )


class StatusLoop:
    """Every `interval` seconds, one container_status_update per managed container."""

    def __init__(self, reader: StatusReader, store: MemoryStore, sink: EventSink, interval: float,
                 listening: Callable[[], bool]) -> None:
        self.reader, self.store, self.sink, self.interval, self.listening = reader, store, sink, interval, listening
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-loop")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def round(self) -> list[ContainerStatus]:
        records = list(self.store.records())
        results = await asyncio.gather(*(self.reader.status(r) for r in records), return_exceptions=True)
        self.reader.forget_stats({s.docker_id for s in results if isinstance(s, ContainerStatus) and s.docker_id})
        statuses = []
        for record, result in zip(records, results):
            if isinstance(result, BaseException):
                log.warning("status of %s unavailable: %r", record.id, result)
                continue
            statuses.append(result)
            self.sink.publish(StatusReport(result))
        return statuses

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(next_tick - loop.time(), 0))
            next_tick += self.interval
            if self.listening() and len(self.store):
                try:
                    await self.round()
                except Exception:
                    log.exception("status round failed")
            next_tick = max(next_tick, loop.time())
