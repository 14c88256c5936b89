"""The reconcile loop: level-triggered convergence of Docker to the store.

Wake-ups (store changes, Docker events, the periodic resync, back-off timers)
only put a key on the queue. A worker then reads the record and what Docker
really has, publishes what changed since it last looked (status, crash,
health), asks the planner what to do, applies it, and writes the outcome back
to the record's status, where request handlers are waiting for it.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field, replace

from opentelemetry import trace

from controller.adapters.docker import DockerAdapter, DockerFailure, describe_host
from controller.adapters.links import LinkManager
from controller.applier import Applier
from controller.code_deploy import CodeDeployer
from controller.crashes import RestartBackoff, detect_crash, next_crash_count, run_ended
from controller.engine import EngineWatch
from controller.events import Activity, ContainerCrashed, ControllerError, EventSink, HealthWarning, StatusChanged
from controller.health import effective_health, link_health
from controller.labels import CONTAINER_ID
from controller.observed import ABSENT, Observed
from controller.planner import Act, Plan, plan, plan_orphan, primary_of, restart_binding
from controller.queue import WorkQueue
from store import ConvergeError, DesiredState, MemoryStore, Record
from store.records import ENDED_RUNS_KEPT, RunKey

log = logging.getLogger("flow_manager.controller")
UNKNOWN = "unknown"  # the state of every container while the engine cannot be asked (as a pod on a lost node)
tracer = trace.get_tracer("flow_manager.controller")


class NotObserved(Exception):
    """A status read found nothing observed: the controller's first look at the key failed or is late."""


@dataclass
class KeyState:
    """The controller's memory of one container, used only to compute diffs.

    Lost with the process; what must survive it (the runs judged, the run a restart ends) is on the record.
    """

    state: str | None = None
    health: str | None = None
    observed: Observed | None = None
    looked: bool = False  # the controller has observed this key at least once since the manager started
    acknowledged: collections.deque[RunKey] = field(default_factory=lambda: collections.deque(maxlen=32))
    crash_count: int = 0
    restart_not_before: float | None = None
    waiting_reason: str | None = None
    last_generation: int = 0
    last_error: tuple[str, str] | None = None
    error_backoff: float = 0.0
    unreachable_strikes: int = 0


class Reconciler:
    def __init__(self, store: MemoryStore, docker: DockerAdapter, applier: Applier, sink: EventSink, *,
                 backoff: RestartBackoff = RestartBackoff(), workers: int = 32,
                 resync_period: float = 30.0, links: LinkManager | None = None,
                 deployer: CodeDeployer | None = None, orphan_grace: float = 60.0, docker_host: str = "",
                 engine_retry_max: float = 5.0) -> None:
        self.store, self.docker, self.applier, self.sink = store, docker, applier, sink
        self.backoff = backoff
        self.workers = workers
        self.resync_period = resync_period
        self.links = links
        self.deployer = deployer
        self.orphan_grace = orphan_grace
        self.queue = WorkQueue()
        self.keys: dict[str, KeyState] = {}
        self.orphans: dict[str, float] = {}  # managed id -> when first seen without a record
        self._first_look: dict[str, asyncio.Event] = {}  # status reads waiting for a key's first observation
        self.engine = EngineWatch(docker, sink, docker_host=describe_host(docker_host), on_event=self._docker_event,
                                  on_lost=self._engine_lost, on_back=self._engine_back, on_resubscribed=self.resync,
                                  retry_max=engine_retry_max)
        docker.on_unreachable = self.engine.suspect
        self._tasks: list[asyncio.Task[None]] = []
        store.watch(self.queue.add)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"reconcile-worker-{i}") for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self.engine.run(), name="docker-engine"))
        self._tasks.append(asyncio.create_task(self._resync_forever(), name="resync"))

    async def stop(self) -> None:
        self.queue.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def resync(self) -> None:
        """Queue every key we know of or Docker has: the level-triggered safety net.

        Nothing while the engine is unreachable: each reconcile would only fail, and the engine's return
        resyncs everything.
        """
        if not self.engine.available:
            return
        for record in self.store.records():
            self.queue.add(record.id)
        try:
            for managed_id in await self.docker.managed_ids():
                self.queue.add(managed_id)
        except DockerFailure as failure:
            log.warning("resync could not list containers: %s", failure.message)

    async def _resync_forever(self) -> None:
        while True:
            await self.resync()
            await asyncio.sleep(self.resync_period)

    def _docker_event(self, event: dict[str, object]) -> None:
        actor = event.get("Actor")
        attributes = actor.get("Attributes") if isinstance(actor, dict) else None
        managed_id = attributes.get(CONTAINER_ID) if isinstance(attributes, dict) else None
        if isinstance(managed_id, str) and managed_id:
            self.queue.add(managed_id)

    # -- the engine going away and coming back -----------------------------------------
    def _engine_lost(self) -> None:
        """Every container's state becomes unknown, once; nothing is decided until Docker answers again."""
        now = time.time()
        for key, state in self.keys.items():
            record = self.store.get(key)
            if record is None or state.state in (None, UNKNOWN):
                continue
            self.sink.publish(StatusChanged(key, state.state, UNKNOWN, now))
            self.sink.publish(Activity("status_change", key, f"Container {record.spec.name} {state.state} -> "
                                       f"{UNKNOWN}: Docker engine unreachable",
                                       {"old_state": state.state, "new_state": UNKNOWN, "reason": "docker_unreachable"}))
            state.state = UNKNOWN
        for looked in self._first_look.values():  # status reads answer from what is known: nothing to wait for
            looked.set()
        self._first_look.clear()

    async def _engine_back(self) -> None:
        """Relist everything and converge at once: back-offs earned during the outage are forgotten."""
        for state in self.keys.values():
            state.error_backoff, state.last_error, state.unreachable_strikes = 0.0, None, 0
            state.restart_not_before, state.waiting_reason = None, None
        await self.resync()

    # -- one key -----------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            record = self.store.get(key)
            try:
                with tracer.start_as_current_span("reconcile", attributes={"container_id": key}):
                    await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(key, record, exc)
            else:
                state = self.keys.get(key)
                if state is not None:
                    state.error_backoff, state.last_error, state.unreachable_strikes = 0.0, None, 0
            finally:
                self.queue.done(key)

    def _failed(self, key: str, record: Record | None, exc: Exception) -> None:
        state = self.keys.setdefault(key, KeyState())
        waiting = self._first_look.pop(key, None)
        if waiting is not None:  # a status read waiting for the first look is answered now, not at its timeout
            waiting.set()
        unreachable = isinstance(exc, DockerFailure) and exc.details.get("reason") == "docker_unreachable"
        state.unreachable_strikes = state.unreachable_strikes + 1 if unreachable else 0
        if isinstance(exc, DockerFailure):
            log.info("reconcile of %s failed (%s, %s): %s", key, exc.error_type,
                     "permanent" if exc.permanent else "will retry", exc.message)
        if isinstance(exc, DockerFailure) and unreachable and (not self.engine.available
                                                               or state.unreachable_strikes == 1):
            # Most likely the engine went away: its watch reports that once for everyone (and requeues every
            # key when Docker is back). A request waiting on this key is answered now, not at its timeout.
            # Should the engine still answer pings, the next failure is reported as an ordinary one.
            if record is not None:
                self.store.report(key, record.generation, ConvergeError(
                    exc.error_type, exc.message, {**exc.details, "container_id": key}, permanent=False))
            if self.engine.available:
                self.queue.add_after(key, 1.0)
            return
        if isinstance(exc, DockerFailure):
            failure = exc
        else:
            log.exception("reconcile of %s failed unexpectedly", key)
            failure = DockerFailure("system_error", f"{type(exc).__name__}: {exc}", operation="reconcile",
                                    permanent=True)
        if record is not None:
            error = ConvergeError(failure.error_type, failure.message, {**failure.details, "container_id": key},
                                  permanent=failure.permanent)
            self.store.report(key, record.generation, error)
        signature = (failure.error_type, failure.message)
        if signature != state.last_error:
            state.last_error = signature
            self.sink.publish(Activity("container_error", key, failure.message,
                                       {**failure.details, "error_type": failure.error_type}))
            if not self.store.has_waiters(key):
                self.sink.publish(ControllerError(failure.error_type, failure.message,
                                                  {**failure.details, "container_id": key}))
        if not failure.permanent:
            state.error_backoff = min(max(0.5, state.error_backoff * 2), 60.0)
            self.queue.add_after(key, state.error_backoff)

    async def reconcile(self, key: str) -> None:
        if not self.engine.available:
            raise DockerFailure("docker_api_error", f"Docker engine unreachable: {self.engine.last_error}; the "
                                "request is kept and applied when it answers again", operation="reconcile",
                                details={"reason": "docker_unreachable"})
        record = self.store.get(key)
        if record is None:
            await self._collect_orphan(key)
            return
        self.orphans.pop(key, None)
        state = self.keys.setdefault(key, KeyState())
        new_intent = record.generation != state.last_generation
        if new_intent:
            # New intent from a client: an explicit start is not held back by crash back-off, neither by one
            # earned before nor by one the diff below finds (see _diff).
            state.last_generation = record.generation
            state.restart_not_before, state.waiting_reason = None, None
        if self.links is not None and record.desired is not DesiredState.DELETED:
            await self.links.ensure(record)

        observed = await self.docker.observe(key)
        desired_hash = self.applier.desired_hash(record)
        primary = primary_of(observed, desired_hash)
        await self._diff(key, record, primary, new_intent=new_intent)
        binding = restart_binding(record, primary)
        if binding is not None:  # a restart request taken up: it ends the run Docker has now
            self.store.note(key, restart_target=binding)
            record = replace(record, restart_target=binding)

        revision = self.deployer.running_revision(record, primary.docker_id if primary else None) \
            if self.deployer is not None else None
        decided = plan(record, observed, now=time.time(), restart_not_before=state.restart_not_before,
                       running_revision=revision, desired_hash=desired_hash)
        if binding is not None and decided.actions:
            # On disk before Docker acts: a manager restarted after the restart must not bind it to the new run.
            await self.store.durable()
        await self._apply(key, record, decided, primary)

        if decided.forget:
            await self._forget(key, record, existed=bool(observed))
            return
        state.waiting_reason = decided.waiting_reason
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)
            return
        self.store.report(key, record.generation, None)

    async def _apply(self, key: str, record: Record, decided: Plan, primary: Observed | None) -> None:
        if not decided.actions:
            return
        state = self.keys[key]

        async def acknowledge(docker_id: str, lasting: bool) -> None:
            # The run the manager is about to end is not a crash. When its container stays (a stop, a
            # restart), the record says so on disk before Docker is asked: a manager restarted in between
            # (before its first look at this key, even) still knows.
            if state.observed is None or state.observed.docker_id != docker_id:
                return
            state.acknowledged.append(state.observed.run_key)
            if lasting:
                self._remember_run(key, state.observed.run_key)
                await self.store.durable()

        async def checkpoint(docker_id: str) -> None:
            await self._diff(key, record, await self.docker.inspect(docker_id))

        target = primary.docker_id if primary else None
        for action in decided.actions:
            acted_on, activity = await self.applier.apply(record, action, action.docker_id or target, acknowledge,
                                                          checkpoint)
            if action.act in (Act.CREATE, Act.REPLACE):
                target = acted_on
            if action.act is Act.REMOVE and acted_on == target:
                target = None
            if activity is not None:
                self.sink.publish(activity)
            await self._diff(key, record, await self.docker.inspect(target) if target else None)

    async def _forget(self, key: str, record: Record, existed: bool) -> None:
        self._looked(key)
        if self.links is not None:
            await self.links.discard(key, record.spec.name)
        if existed:  # a create withdrawn before Docker made anything deletes nothing
            self.sink.publish(Activity("container_deleted", key, f"Container {record.spec.name} deleted",
                                       {"name": record.spec.name, "image": record.spec.image}))
        self.keys.pop(key, None)
        current = self.store.get(key)
        if current is not None and current.desired is DesiredState.DELETED:
            self.store.remove(key)

    async def _collect_orphan(self, key: str) -> None:
        """A container labelled for this manager that no record wants: reported, then removed after a grace."""
        observed = await self.docker.observe(key)
        now = time.time()
        if observed and key not in self.orphans:
            self.orphans[key] = now
            names = sorted({o.name for o in observed})
            self.sink.publish(Activity("container_error", key, f"Container {', '.join(names)} is labelled as managed "
                                       f"by this manager but has no record; it will be removed in "
                                       f"{self.orphan_grace:g} s", {"reason": "orphan", "names": names,
                                                                    "docker_ids": [o.docker_id for o in observed],
                                                                    "remove_at": now + self.orphan_grace}))
        decided = plan_orphan(observed, now=now, found_at=self.orphans.get(key, now), grace=self.orphan_grace)
        for action in decided.actions:
            await self.docker.remove(str(action.docker_id))
            gone = next(o for o in observed if o.docker_id == action.docker_id)
            log.warning("removed orphaned container %s (%s)", gone.name, gone.docker_id[:12])
            self.sink.publish(Activity("container_deleted", key, f"Orphaned container {gone.name} removed",
                                       {"reason": "orphan", "name": gone.name, "docker_id": gone.docker_id,
                                        "image": gone.image}))
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)
        if decided.forget:
            self.orphans.pop(key, None)
            self.keys.pop(key, None)

    # -- diffs -------------------------------------------------------------------
    def _remember_run(self, key: str, run: RunKey) -> None:
        """Journal a judged run with the record (bounded: only a container's latest runs can be observed)."""
        current = self.store.get(key)
        if current is not None and run not in current.ended_runs:
            self.store.note(key, ended_runs=(*current.ended_runs, run)[-ENDED_RUNS_KEPT:])

    def _looked(self, key: str) -> None:
        """The controller has observed the key: status reads waiting for that answer now."""
        state = self.keys.get(key)
        if state is not None:
            state.looked = True
        waiting = self._first_look.pop(key, None)
        if waiting is not None:
            waiting.set()

    async def _diff(self, key: str, record: Record | None, observed: Observed | None, *,
                    new_intent: bool = False) -> None:
        """Publish what changed since the last look; each change exactly once.

        A run that ended is judged once, and the verdict is journaled with the record (Record.ended_runs):
        a crash, or not one (the manager ended it, or the record did not want it running), so a restarted
        manager never judges it again. `new_intent`: the first look at a client's new generation; a crash
        found now is reported but earns no back-off delay, since that intent restarts the container at once.
        """
        if record is None:
            return
        state = self.keys.setdefault(key, KeyState())
        now = time.time()
        current = self.store.get(key)
        judged = set(state.acknowledged).union(current.ended_runs if current is not None else ())
        crash = detect_crash(record, observed, judged)
        if observed is not None and run_ended(observed) and observed.run_key not in judged:
            state.acknowledged.append(observed.run_key)  # each run is judged once
            self._remember_run(key, observed.run_key)
        if crash is not None:
            outage = self.engine.last_outage
            if outage is not None and crash.finished_at is not None and outage.covers(crash.finished_at):
                crash = None  # Docker stopped it while restarting itself: not a crash, no back-off
        if crash is not None and observed is not None:
            state.crash_count = next_crash_count(state.crash_count, crash, self.backoff)
            delay = 0.0 if new_intent else self.backoff.delay(state.crash_count)
            state.restart_not_before = now + delay if delay else None
            logs = await self.docker.logs_tail(observed.docker_id)
            self.sink.publish(ContainerCrashed(key, crash.exit_code, crash.description, logs, crash.oom_killed,
                                               delay, now))
            self.sink.publish(Activity("container_crash", key, f"Container {record.spec.name} crashed: "
                                       f"{crash.description}", {"exit_code": crash.exit_code,
                                                                 "restart_in": delay,
                                                                 "crash_count": state.crash_count}))
        new_state = observed.api_state if observed is not None else ABSENT
        if state.state is None and observed is None:
            self._looked(key)
            return  # nothing existed yet: creation is not a transition from "deleted"
        if state.state is not None and new_state != state.state:
            self.sink.publish(StatusChanged(key, state.state, new_state, now))
            self.sink.publish(Activity("status_change", key,
                                       f"Container {record.spec.name} {state.state} -> {new_state}",
                                       {"old_state": state.state, "new_state": new_state}))
        state.state = new_state
        health = self.health_of(key, observed)
        if health == "unhealthy" and state.health != "unhealthy":
            self.sink.publish(HealthWarning(key, health, now))
            self.sink.publish(Activity("health_warning", key, f"Container {record.spec.name} is unhealthy",
                                       {"health": health}))
        state.health = health
        state.observed = observed
        self._looked(key)

    # -- reading for the API -------------------------------------------------------
    async def observation(self, key: str, timeout: float) -> Observed | None:
        """What the controller last observed of a key, for a status request: no Docker call.

        Docker's event stream and the resync keep it current (a container that exits is seen within
        milliseconds); the key is woken too, so a change the stream missed shows at the next read. Right
        after the manager started, before the controller's first look at the key, this waits for that
        look, up to `timeout`; NotObserved when it failed or took longer. While the engine is unreachable:
        the last thing Docker said, at once.
        """
        state = self.keys.get(key)
        if not self.engine.available:
            return state.observed if state is not None else None
        self.queue.add(key)
        if state is None or not state.looked:
            first_look = self._first_look.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(first_look.wait(), timeout)
            except TimeoutError:
                raise NotObserved(f"the controller has not looked at container {key} within {timeout:g} s") from None
            state = self.keys.get(key)
            if self.engine.available and state is not None and not state.looked:
                error = f": {state.last_error[1]}" if state.last_error else ""
                raise NotObserved(f"the controller could not look at container {key} yet{error}")
        return state.observed if state is not None else None

    async def refresh(self, key: str) -> Observed | None:
        """Read Docker now, for the periodic status round (not for requests: see observation()).

        Diffs are published only by the key's worker (one at a time, in order);
        a read that shows something new just wakes that worker.
        """
        record = self.store.get(key)
        state = self.keys.get(key)
        if not self.engine.available:
            return state.observed if state is not None else None  # the last thing Docker said; state is unknown
        if state is not None and state.observed is not None:
            # One inspect of the container we know; only when it is gone do we search by label.
            primary = await self.docker.inspect(state.observed.docker_id)
        else:
            primary = None
        if primary is None:
            observed = await self.docker.observe(key)
            primary = primary_of(observed, self.applier.desired_hash(record)) if record else None
        if state is None or (primary.api_state if primary else ABSENT) != state.state:
            self.queue.add(key)
        return primary

    def health_of(self, key: str, observed: Observed | None) -> str | None:
        if observed is None:
            return None
        from_link = None
        if self.links is not None:
            self.links.observe_run(key, observed.started_at)
            from_link = link_health(self.links.probe(key), now=time.time(), timeout=self.links.ping_timeout)
        return effective_health(observed.health, from_link, observed.running)

    def known(self, key: str) -> KeyState | None:
        return self.keys.get(key)
