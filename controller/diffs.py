"""What changed since the controller last looked at a container, published exactly once.

Only the key's single worker calls this (see controller/queue.py), so each status transition, crash
and health warning is published once and in order. A run that ended is judged once, and the verdict
is journaled with the record (Record.ended_runs): a crash, or not one (the manager ended it, the record
did not want it running, the engine stopped it during an outage), so a restarted manager never judges
it again. What it saw goes to the read side (controller/view.py).
"""

from __future__ import annotations

import time
from typing import Protocol

from controller import metrics
from controller.crashes import RestartBackoff, detect_crash, next_crash_count, run_ended
from controller.engine import EngineState
from controller.events import Activity, ContainerCrashed, EventSink, HealthWarning, StatusChanged
from controller.memory import Memory
from controller.observed import ABSENT, Observed
from controller.view import Observations
from store import MemoryStore, Record
from store.records import ENDED_RUNS_KEPT, RunKey


class Logs(Protocol):
    async def logs_tail(self, docker_id: str, lines: int = 50) -> str: ...


class RunObserver(Protocol):
    def observe_run(self, container_id: str, started_at: float | None) -> None: ...


class Diffs:
    def __init__(
        self,
        store: MemoryStore,
        sink: EventSink,
        view: Observations,
        memory: Memory,
        engine: EngineState,
        logs: Logs,
        *,
        backoff: RestartBackoff,
        links: RunObserver | None = None,
    ) -> None:
        self.store, self.sink, self.view, self.memory, self.engine = store, sink, view, memory, engine
        self.logs, self.backoff, self.links = logs, backoff, links

    def remember_run(self, key: str, run: RunKey) -> None:
        """Journal a judged run with the record (bounded: only a container's latest runs can be observed)."""
        current = self.store.get(key)
        if current is not None and run not in current.ended_runs:
            self.store.note(key, ended_runs=(*current.ended_runs, run)[-ENDED_RUNS_KEPT:])

    async def diff(self, key: str, record: Record | None, observed: Observed | None, *, new_intent: bool = False) -> None:
        """Publish what changed since the last look; each change exactly once.

        `new_intent`: the first look at a client's new generation; a crash found now is reported but earns
        no back-off delay, since that intent restarts the container at once.
        """
        if record is None:
            return
        seen, memory = self.view.entry(key), self.memory.of(key)
        now = time.time()
        current = self.store.get(key)
        judged = set(memory.acknowledged).union(current.ended_runs if current is not None else ())
        crash = detect_crash(record, observed, judged)
        if observed is not None and run_ended(observed) and observed.run_key not in judged:
            memory.acknowledged.append(observed.run_key)  # each run is judged once
            self.remember_run(key, observed.run_key)
        if crash is not None:
            outage = self.engine.last_outage
            if outage is not None and crash.finished_at is not None and outage.covers(crash.finished_at):
                crash = None  # Docker stopped it while restarting itself: not a crash, no back-off
        if crash is not None and observed is not None:
            seen.crash_count = next_crash_count(seen.crash_count, crash, self.backoff)
            delay = 0.0 if new_intent else self.backoff.delay(seen.crash_count)
            seen.restart_not_before = now + delay if delay else None
            metrics.CRASHES.add(1, metrics.OOM_KILLED[bool(crash.oom_killed)])
            logs = await self.logs.logs_tail(observed.docker_id)
            self.sink.publish(ContainerCrashed(key, crash.exit_code, crash.description, logs, crash.oom_killed, delay, now))
            self.sink.publish(
                Activity(
                    "container_crash",
                    key,
                    f"Container {record.spec.name} crashed: {crash.description}",
                    {"exit_code": crash.exit_code, "restart_in": delay, "crash_count": seen.crash_count},
                )
            )
        new_state = observed.api_state if observed is not None else ABSENT
        if seen.state is None and observed is None:
            self.view.looked(key)
            return  # nothing existed yet: creation is not a transition from "deleted"
        if seen.state is not None and new_state != seen.state:
            self.sink.publish(StatusChanged(key, seen.state, new_state, now))
            self.sink.publish(
                Activity(
                    "status_change",
                    key,
                    f"Container {record.spec.name} {seen.state} -> {new_state}",
                    {"old_state": seen.state, "new_state": new_state},
                )
            )
        seen.state = new_state
        if observed is not None and self.links is not None:
            # The run began then: a link dropped before it is not an outage (the link's pinger reads this).
            self.links.observe_run(key, observed.started_at)
        health = self.view.health_of(key, observed)
        if health == "unhealthy" and seen.health != "unhealthy":
            self.sink.publish(HealthWarning(key, health, now))
            self.sink.publish(Activity("health_warning", key, f"Container {record.spec.name} is unhealthy", {"health": health}))
        seen.health = health
        seen.observed = observed
        self.view.looked(key)
