"""The container reconcile: one pass over one key, called by the generic loop (controller/loop.py).

observe (Docker's containers for the record) → diff (controller/diffs.py publishes what changed) →
plan (controller/planner.py, pure) → apply (controller/applier.py, one action at a time, diffing after
each) → report (the outcome on the record's status, where request handlers wait for it). A key with no
record is an orphan (controller/orphans.py). A failed pass is reported on the record and, unless the
engine is gone (controller/outage.py reacts to that once for every key), retried with back-off.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from controller import metrics
from controller.adapters.docker import DockerAdapter, DockerFailure, failure_cause
from controller.adapters.links import LinkManager
from controller.applier import Applier
from controller.code_deploy import CodeDeployer
from controller.diffs import Diffs
from controller.engine import EngineState
from controller.events import Activity, ControllerError, EventSink
from controller.loop import BACKOFF, NO_RETRY, Result, Retry
from controller.memory import Memory
from controller.observed import Observed
from controller.orphans import Orphans
from controller.planner import Act, Action, Plan, plan, primary_of, restart_binding
from controller.tracing import link_to
from controller.view import Observations
from store import ConvergeError, DesiredState, MemoryStore, Record

log = logging.getLogger("flow_manager.controller")
UNREACHABLE_RETRY = 1.0  # s: a first "unreachable" while the engine still answers pings is retried this soon


class ContainerReconciler:
    def __init__(
        self,
        store: MemoryStore,
        docker: DockerAdapter,
        applier: Applier,
        sink: EventSink,
        *,
        engine: EngineState,
        view: Observations,
        memory: Memory,
        diffs: Diffs,
        orphans: Orphans,
        links: LinkManager | None = None,
        deployer: CodeDeployer | None = None,
    ) -> None:
        self.store, self.docker, self.applier, self.sink = store, docker, applier, sink
        self.engine, self.view, self.memory, self.diffs, self.orphans = engine, view, memory, diffs, orphans
        self.links, self.deployer = links, deployer
        self._taken: dict[str, Record | None] = {}  # key -> the record as its current pass began

    async def reconcile(self, key: str) -> Result:
        # A failure is reported against the generation the pass began with, not one that came meanwhile.
        self._taken[key] = self.store.get(key)
        if not self.engine.available:
            raise DockerFailure(
                "docker_api_error",
                f"Docker engine unreachable: {self.engine.last_error}; the request is kept and applied when it answers again",
                operation="reconcile",
                details={"reason": "docker_unreachable"},
            )
        record = self.store.get(key)
        if record is None:
            decided = await self.orphans.collect(key)
            if decided.forget:
                self.view.forget(key)
                self.memory.forget(key)
            return Result(decided.requeue_after)
        self.orphans.claimed(key)
        if not record.converged:  # this pass works for the request that asked for the generation
            link_to(record.trace_context, "converges")
        memory, seen = self.memory.of(key), self.view.entry(key)
        new_intent = record.generation != memory.last_generation
        if new_intent:
            # New intent from a client: an explicit start is not held back by crash back-off, neither by one
            # earned before nor by one the diff below finds (see Diffs.diff).
            memory.last_generation = record.generation
            seen.restart_not_before, seen.waiting_reason = None, None
        if self.links is not None and record.desired is not DesiredState.DELETED:
            await self.links.ensure(record)

        observed = await self.docker.observe(key)
        desired_hash = self.applier.desired_hash(record)
        primary = primary_of(observed, desired_hash)
        await self.diffs.diff(key, record, primary, new_intent=new_intent)
        binding = restart_binding(record, primary)
        if binding is not None:  # a restart request taken up: it ends the run Docker has now
            self.store.note(key, restart_target=binding)
            record = replace(record, restart_target=binding)

        revision = self.deployer.running_revision(record, primary.docker_id if primary else None) if self.deployer is not None else None
        decided = plan(
            record, observed, now=time.time(), restart_not_before=seen.restart_not_before, running_revision=revision, desired_hash=desired_hash
        )
        if binding is not None and decided.actions:
            # On disk before Docker acts: a manager restarted after the restart must not bind it to the new run.
            await self.store.durable()
        await self._apply(key, record, decided, primary, new_intent)

        if decided.forget:
            await self._forget(key, record, existed=bool(observed))
            return Result()
        seen.waiting_reason = decided.waiting_reason
        if decided.requeue_after is not None:
            return Result(decided.requeue_after)
        self.store.report(key, record.generation, None)
        return Result()

    async def _apply(self, key: str, record: Record, decided: Plan, primary: Observed | None, new_intent: bool) -> None:
        if not decided.actions:
            return
        seen, memory = self.view.entry(key), self.memory.of(key)

        async def acknowledge(docker_id: str, lasting: bool) -> None:
            # The run the manager is about to end is not a crash. When its container stays (a stop, a
            # restart), the record says so on disk before Docker is asked: a manager restarted in between
            # (before its first look at this key, even) still knows.
            if seen.observed is None or seen.observed.docker_id != docker_id:
                return
            memory.acknowledged.append(seen.observed.run_key)
            if lasting:
                self.diffs.remember_run(key, seen.observed.run_key)
                await self.store.durable()

        async def checkpoint(docker_id: str) -> None:
            await self.diffs.diff(key, record, await self.docker.inspect(docker_id))

        target = primary.docker_id if primary else None
        for action in decided.actions:
            acted_on, activity = await self.applier.apply(record, action, action.docker_id or target, acknowledge, checkpoint)
            if action.act in (Act.CREATE, Act.REPLACE):
                target = acted_on
            if action.act is Act.REMOVE and acted_on == target:
                target = None
            if activity is not None:
                self.sink.publish(activity)
            _count_restart(action, new_intent)
            await self.diffs.diff(key, record, await self.docker.inspect(target) if target else None)

    async def _forget(self, key: str, record: Record, existed: bool) -> None:
        self.view.looked(key)
        if self.links is not None:
            await self.links.discard(key, record.spec.name)
        if existed:  # a create withdrawn before Docker made anything deletes nothing
            self.sink.publish(
                Activity("container_deleted", key, f"Container {record.spec.name} deleted", {"name": record.spec.name, "image": record.spec.image})
            )
        self.view.forget(key)
        self.memory.forget(key)
        current = self.store.get(key)
        if current is not None and current.desired is DesiredState.DELETED:
            self.store.remove(key)

    # -- after a pass ------------------------------------------------------------------
    def succeeded(self, key: str) -> None:
        self._taken.pop(key, None)
        seen, memory = self.view.known(key), self.memory.keys.get(key)
        if seen is not None:
            seen.last_error = None
        if memory is not None:
            memory.unreachable_strikes = 0

    def failed(self, key: str, exc: Exception) -> Retry:
        record = self._taken.pop(key, None)
        seen, memory = self.view.entry(key), self.memory.of(key)
        self.view.answer(key)  # a status read waiting for the first look is answered now, not at its timeout
        unreachable = isinstance(exc, DockerFailure) and exc.details.get("reason") == "docker_unreachable"
        memory.unreachable_strikes = memory.unreachable_strikes + 1 if unreachable else 0
        if isinstance(exc, DockerFailure):
            log.info("reconcile of %s failed (%s, %s): %s", key, exc.error_type, "permanent" if exc.permanent else "will retry", exc.message)
        if isinstance(exc, DockerFailure) and unreachable and (not self.engine.available or memory.unreachable_strikes == 1):
            # Most likely the engine went away: its watch reports that once for everyone (and requeues every
            # key when Docker is back). A request waiting on this key is answered now, not at its timeout.
            # Should the engine still answer pings, the next failure is reported as an ordinary one.
            if record is not None:
                self.store.report(
                    key, record.generation, ConvergeError(exc.error_type, exc.message, {**exc.details, "container_id": key}, permanent=False)
                )
            return Retry(after=UNREACHABLE_RETRY) if self.engine.available else NO_RETRY
        if isinstance(exc, DockerFailure):
            failure = exc
        else:
            log.exception("reconcile of %s failed unexpectedly", key, exc_info=exc)
            failure = DockerFailure("system_error", f"{type(exc).__name__}: {exc}", operation="reconcile", permanent=True)
        if record is not None:
            error = ConvergeError(failure.error_type, failure.message, {**failure.details, "container_id": key}, permanent=failure.permanent)
            self.store.report(key, record.generation, error)
        # Once per change of cause, not once per retry (the cause leaves out Docker's per-attempt ids).
        previous = failure_cause(*seen.last_error) if seen.last_error else None
        seen.last_error = (failure.error_type, failure.message)
        if failure_cause(*seen.last_error) != previous:
            self.sink.publish(Activity("container_error", key, failure.message, {**failure.details, "error_type": failure.error_type}))
            if not self.store.has_waiters(key):
                self.sink.publish(ControllerError(failure.error_type, failure.message, {**failure.details, "container_id": key}))
        return NO_RETRY if failure.permanent else BACKOFF


def _count_restart(action: Action, new_intent: bool) -> None:
    """A restart is the manager starting an existing container again: asked for (restart_container), or
    without new intent, because its run ended on its own (a crash, or the engine stopped it)."""
    if action.act is Act.RESTART:
        metrics.RESTARTS.add(1, metrics.RESTART_REQUESTED)
    elif action.act is Act.START and action.docker_id is not None and not new_intent:
        metrics.RESTARTS.add(1, metrics.RESTART_AFTER_EXIT)
