"""Point-in-time status of managed containers, and the periodic status round.

Stats for many containers are fetched concurrently (Docker's stats call waits
about a second for a second CPU sample, so one-after-another would cost a
second per container).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from controller.adapters.cgroup_stats import CgroupStats
from controller.adapters.docker import DockerAdapter, DockerFailure
from controller.adapters.stats import format_uptime, resource_usage
from controller.clock import iso_now
from controller.events import EventSink
from controller.observed import ABSENT, Listed, Observed
from controller.planner import primary_of
from controller.view import Observations
from store import MemoryStore, Record

log = logging.getLogger("flow_manager.status")


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
    # why the controller could not converge the record (until it can): e.g. a bind source refused at a restart
    last_error: dict[str, Any] | None = None


@dataclass(frozen=True)
class StatusReport:
    """One container's entry in a periodic status round."""

    status: ContainerStatus


class StatusReader:
    """Reads what the controller observed (controller/view.py) and resource usage; never writes."""

    def __init__(
        self,
        store: MemoryStore,
        view: Observations,
        docker: DockerAdapter,
        desired_hash: Callable[[Record], str],
        links: LinkState | None = None,
        stats_concurrency: int = 64,
    ) -> None:
        self.store, self.view, self.docker, self.links = store, view, docker, links
        self.desired_hash = desired_hash  # of the record's create body: which of several containers is its own
        self._stats_slots = asyncio.Semaphore(stats_concurrency)
        self._cgroups = CgroupStats()
        self.last_round_ms: dict[str, float] = {}  # where the last status round's time went

    async def _usage(self, observed: Observed | None) -> dict[str, Any]:
        if observed is None or not observed.running or not self.view.engine_available():
            return resource_usage(None, iso_now())
        fast = await self._cgroups.usage(observed.docker_id, observed.pid, iso_now())
        return fast if fast is not None else await self._docker_usage(observed)

    async def _docker_usage(self, observed: Observed) -> dict[str, Any]:
        """Docker's stats endpoint (about a second each): only when the cgroup files are not visible."""
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

    async def status(self, record: Record, wait: float = 10.0) -> ContainerStatus:
        """One container's status for a request.

        Its state is what the controller last observed (no Docker call; see Observations.observation, which
        may wait up to `wait` s for the controller's first look after a manager start, else raises
        NotObserved); its resource usage comes from cgroup files, or Docker's stats API when they are not
        visible.
        """
        sampled = await self.view.observation(record.id, wait)
        usage = await self._usage(sampled)
        # State is read again after the (possibly slow) stats so the report is never older than its numbers.
        known = self.view.known(record.id)
        observed = known.observed if known is not None and known.looked else sampled
        if observed is not None and observed.running and (sampled is None or sampled.docker_id != observed.docker_id):
            usage = await self._usage(observed)  # another container meanwhile: sample that one
        return self._build(record, observed, usage)

    async def statuses(self, records: list[Record]) -> list[ContainerStatus | BaseException]:
        """Every record's status for the periodic round: one Docker list call in all, not an inspect each.

        The controller's last inspect of a container (kept current by Docker's
        event stream and the resync) is reused when the list shows that same
        container in the same state and health; only a container that changed is
        inspected again (and its key queued, as refresh() does). Resource usage of
        all running containers is read from cgroups in one worker-thread hop.
        """
        if not self.view.engine_available():  # nothing to ask Docker: status() reports "unknown" at once
            return await asyncio.gather(*(self.status(r) for r in records), return_exceptions=True)
        started = time.perf_counter()
        try:
            listing = await self.docker.list_managed()
        except DockerFailure as failure:
            log.warning("status round falls back to one inspect per container: %s", failure.message)
            return await asyncio.gather(*(self.status(r) for r in records), return_exceptions=True)
        listed: dict[str, list[Listed]] = {}
        for entry in listing:
            listed.setdefault(entry.managed_id, []).append(entry)

        async def current(record: Record) -> Observed | None:
            known = self.view.known(record.id)
            seen = listed.get(record.id, [])
            if known is not None and known.observed is not None and any(e.matches(known.observed) for e in seen):
                return known.observed
            if known is not None and known.state == ABSENT and not seen:
                return None  # known to be absent and still absent
            return await self.refresh(record.id)

        listed_at = time.perf_counter()
        observed = await asyncio.gather(*(current(r) for r in records), return_exceptions=True)
        checked_at = time.perf_counter()

        running = {o.docker_id: o for o in observed if isinstance(o, Observed) and o.running}
        stamp = iso_now()
        usage: dict[str, dict[str, Any] | None] = (
            await self._cgroups.usage_many([(o.docker_id, o.pid) for o in running.values()], stamp) if running else {}
        )
        slow = [docker_id for docker_id, value in usage.items() if value is None]  # cgroups not visible: Docker's API
        for docker_id, value in zip(slow, await asyncio.gather(*(self._docker_usage(running[d]) for d in slow))):
            usage[docker_id] = value
        sampled_at = time.perf_counter()
        self.last_round_ms = {
            "list": round((listed_at - started) * 1000, 1),
            "inspect_changed": round((checked_at - listed_at) * 1000, 1),
            "usage": round((sampled_at - checked_at) * 1000, 1),
        }
        results: list[ContainerStatus | BaseException] = []
        for record, seen in zip(records, observed):
            if isinstance(seen, BaseException):
                results.append(seen)
                continue
            results.append(self._build(record, seen, (usage.get(seen.docker_id) if seen else None) or resource_usage(None, stamp)))
        return results

    async def refresh(self, key: str) -> Observed | None:
        """Read Docker now, for the periodic status round (not for requests: see Observations.observation).

        Diffs are published only by the key's worker (one at a time, in order); a read that shows
        something new just wakes that worker.
        """
        record = self.store.get(key)
        known = self.view.known(key)
        if not self.view.engine_available():
            return known.observed if known is not None else None  # the last thing Docker said; state is unknown
        if known is not None and known.observed is not None:
            # One inspect of the container we know; only when it is gone do we search by label.
            primary = await self.docker.inspect(known.observed.docker_id)
        else:
            primary = None
        if primary is None:
            observed = await self.docker.observe(key)
            primary = primary_of(observed, self.desired_hash(record)) if record else None
        if known is None or (primary.api_state if primary else ABSENT) != known.state:
            self.view.wake(key)
        return primary

    def _build(self, record: Record, observed: Observed | None, usage: dict[str, Any]) -> ContainerStatus:
        known = self.view.known(record.id)
        engine_up = self.view.engine_available()
        if observed is None or not observed.running or not engine_up:
            usage = resource_usage(None, usage["timestamp"])
        now = time.time()
        running = observed is not None and observed.running
        connected = bool(self.links and self.links.connected(record.id)) and running
        return ContainerStatus(
            container_id=record.id,
            name=record.spec.name,
            image=record.spec.image,
            desired=record.desired.value,
            docker_id=observed.docker_id if observed else None,
            state=self.view.state_of(observed),
            health=self.view.health(record.id, observed),
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
            last_error=last_error(record),
        )


def last_error(record: Record) -> dict[str, Any] | None:
    """The controller's unresolved failure for this record (cleared by its next success)."""
    error = record.status.error
    if error is None:
        return None
    return {"error_type": error.error_type, "message": error.message, **({"reason": error.details["reason"]} if "reason" in error.details else {})}


@dataclass
class RoundTiming:
    """When one status round was due, and when its statuses were read and delivered (wall clock)."""

    tick: float
    containers: int = 0
    collected: float | None = None
    delivered: float | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tick": self.tick,
            "containers": self.containers,
            "collected": self.collected,
            "delivered": self.delivered,
            "phases_ms": self.phases_ms,
            "delivered_after_tick_ms": round((self.delivered - self.tick) * 1000, 1) if self.delivered else None,
        }


class StatusLoop:
    """Every `interval` seconds, one container_status_update per managed container."""

    def __init__(self, reader: StatusReader, store: MemoryStore, sink: EventSink, interval: float, listening: Callable[[], bool]) -> None:
        self.reader, self.store, self.sink, self.interval, self.listening = reader, store, sink, interval, listening
        self._task: asyncio.Task[None] | None = None
        self.timings: collections.deque[RoundTiming] = collections.deque(maxlen=16)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-loop")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def round(self, timing: RoundTiming | None = None) -> list[ContainerStatus]:
        timing = timing or RoundTiming(tick=time.time())
        started = time.time()
        records = list(self.store.records())
        results = await self.reader.statuses(records)
        self.reader.forget_stats({s.docker_id for s in results if isinstance(s, ContainerStatus) and s.docker_id})
        statuses = []
        for record, result in zip(records, results):
            if isinstance(result, BaseException):
                log.warning("status of %s unavailable: %r", record.id, result)
                continue
            statuses.append(result)
        timing.containers, timing.collected = len(statuses), time.time()
        timing.phases_ms = {**self.reader.last_round_ms, "started_after_tick": round((started - timing.tick) * 1000, 1)}
        self.timings.append(timing)

        def delivered() -> None:
            timing.delivered = time.time()

        for i, status in enumerate(statuses):
            self.sink.publish(StatusReport(status), delivered if i == len(statuses) - 1 else None)
        return statuses

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(next_tick - loop.time(), 0))
            due = time.time() - (loop.time() - next_tick)  # the tick in wall-clock time: lateness counts
            next_tick += self.interval
            if self.listening() and len(self.store):
                try:
                    await self.round(RoundTiming(tick=due))
                except Exception:
                    log.exception("status round failed")
            next_tick = max(next_tick, loop.time())
