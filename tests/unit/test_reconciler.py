"""The reconcile loop against an in-memory Docker engine (tests/unit/fake_docker.py).

A "manager restart" here is what the real one keeps: a new store over the records as the journal
serializes them (record_to_json / record_from_json), and a new controller with empty memory, over the
same engine, built as flow_manager/app.py builds it. Clients' intents are written as the request handlers write them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable, Iterable

import pytest

from controller.adapters.docker import DockerFailure
from controller.applier import Applier
from controller.container_config import ContainerDefaults
from controller.crashes import RestartBackoff
from controller.diffs import Diffs
from controller.engine import EngineState, EngineStatus, EngineWatch, Suspicion
from controller.events import Activity, ContainerCrashed, StatusChanged
from controller.loop import ErrorBackoff, Loop
from controller.memory import Memory
from controller.orphans import Orphans
from controller.outage import OutageReactions
from controller.queue import WorkQueue
from controller.reconcile import ContainerReconciler
from controller.status import StatusReader
from controller.view import NotObserved, Observations
from controller.wakeups import Wakeups
from store import ContainerSpec, DesiredState, MemoryStore, Record
from store.journal import record_from_json, record_to_json
from tests.unit.fake_docker import FakeDocker

BACKOFF = RestartBackoff(initial=10.0, maximum=300.0, reset_after=600.0)


class Sink:
    """Collects everything the controller publishes."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self._changed = asyncio.Event()

    def publish(self, event: object, on_sent: Callable[[], None] | None = None) -> bool:
        self.events.append(event)
        self._changed.set()
        if on_sent is not None:
            on_sent()
        return True

    def of(self, kind: type, where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and where(e)]

    def crashes(self) -> list[ContainerCrashed]:
        return self.of(ContainerCrashed)

    def crash_activities(self) -> list[Activity]:
        return self.of(Activity, lambda a: a.activity_type == "container_crash")

    def transitions(self, key: str) -> list[tuple[str, str]]:
        return [(e.old_state, e.new_state) for e in self.of(StatusChanged, lambda e: e.container_id == key)]

    async def wait_for(self, kind: type, where: Callable[[Any], bool] = lambda _: True, count: int = 1, timeout: float = 5.0) -> Any:
        async def found() -> Any:
            while len(self.of(kind, where)) < count:
                self._changed.clear()
                await self._changed.wait()
            return self.of(kind, where)[count - 1]

        try:
            return await asyncio.wait_for(found(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {count}x {kind.__name__} within {timeout} s; saw {self.events}") from None


class Manager:
    """One manager process: store, controller, sink. `restarted()` is the next process after this one."""

    def __init__(self, docker: FakeDocker, records: Iterable[Record] = ()) -> None:
        self.docker = docker
        self.store = MemoryStore(records)
        self.sink = Sink()
        engine, suspicion = EngineState("fake"), Suspicion()
        docker.on_unreachable = suspicion.suspect  # the fake engine outlives this manager: the next one rewires it
        self.queue = WorkQueue()
        self.view = Observations(engine, self.queue.add)
        applier = Applier(docker, ContainerDefaults())  # type: ignore[arg-type]
        memory, errors = Memory(), ErrorBackoff()
        diffs = Diffs(self.store, self.sink, self.view, memory, engine, docker, backoff=BACKOFF)  # type: ignore[arg-type]
        self.reconciler = ContainerReconciler(
            self.store,
            docker,
            applier,
            self.sink,  # type: ignore[arg-type]
            engine=engine,
            view=self.view,
            memory=memory,
            diffs=diffs,
            orphans=Orphans(docker, self.sink),
        )  # type: ignore[arg-type]
        self.wakeups = Wakeups(self.store, docker, engine, self.queue.add, resync_period=3600)  # type: ignore[arg-type]
        outage = OutageReactions(self.store, self.sink, self.view, memory, errors, self.wakeups.resync)
        watch = EngineWatch(
            docker,
            self.sink,
            state=engine,
            suspicion=suspicion,  # type: ignore[arg-type]
            on_event=self.wakeups.docker_event,
            on_lost=outage.lost,
            on_back=outage.back,
            on_resubscribed=self.wakeups.resync,
            retry_max=0.05,
        )
        self.loop = Loop(
            self.queue, self.reconciler, backoff=errors, workers=4, sources={"docker-engine": watch.run, "resync": self.wakeups.resync_forever}
        )
        self.reader = StatusReader(self.store, self.view, docker, applier.desired_hash)  # type: ignore[arg-type]
        self.running = False

    def start(self) -> "Manager":
        self.loop.start()
        self.running = True
        return self

    async def open(self) -> "Manager":
        """Start, and wait until Docker's event stream is followed (as a real manager, shortly after start)."""
        self.start()
        await self.docker.streaming()
        return self

    async def stop(self) -> None:
        if self.running:
            await self.loop.stop()
            self.running = False

    async def restarted(self) -> "Manager":
        """Stop this manager; a new one over what its journal kept (intent only, no memory)."""
        await self.stop()
        kept = [record_from_json(json.loads(json.dumps(record_to_json(r)))) for r in self.store.records()]
        return Manager(self.docker, kept)

    def create(self, name: str = "a", desired: DesiredState = DesiredState.RUNNING) -> Record:
        return self.store.create(ContainerSpec(image="flow:latest", name=name), desired)

    # Intents exactly as api/handlers.py writes them.
    def start_intent(self, key: str) -> Record:
        return self.store.update(key, desired=DesiredState.RUNNING)

    def stop_intent(self, key: str) -> Record:
        return self.store.update(key, desired=DesiredState.STOPPED)

    def restart_intent(self, key: str) -> Record:
        current = self.store.get(key)
        assert current is not None
        return self.store.update(key, desired=DesiredState.RUNNING, restart_requests=current.restart_requests + 1)

    async def converged(self, record: Record, timeout: float = 3.0) -> Record:
        """Wait as a request handler waits: until the controller reports this generation converged."""

        def settled(current: Record | None) -> bool:
            return current is None or current.status.observed_generation >= record.generation

        current = await self.store.wait_for(record.id, settled, timeout)
        assert current is None or current.status.error is None or current.status.error_generation < record.generation
        return current  # type: ignore[return-value]

    async def idle(self, timeout: float = 3.0) -> None:
        """Until no key is queued or being reconciled (back-off timers may still be pending)."""
        deadline = time.monotonic() + timeout
        await asyncio.sleep(0)
        while not self.queue.idle():
            assert time.monotonic() < deadline, "the reconcile loop did not settle"
            await asyncio.sleep(0.01)


@pytest.fixture
async def managers() -> Any:
    started: list[Manager] = []

    def make(docker: FakeDocker, manager: Manager | None = None) -> Manager:
        manager = manager or Manager(docker)
        started.append(manager)
        return manager

    yield make
    for manager in started:
        await manager.stop()


# -- exactly-once diffs ------------------------------------------------------------------------


async def test_each_transition_is_published_once_and_each_crash_once_per_run(managers: Any) -> None:
    docker = FakeDocker()
    m = await managers(docker).open()
    record = m.create()
    await m.converged(record)
    container = docker.only(record.id)
    assert m.sink.transitions(record.id) == [("created", "running")]

    docker.exit_on_its_own(container.docker_id, 3)
    crash = await m.sink.wait_for(ContainerCrashed)
    assert crash.exit_code == 3 and crash.restart_in == 0.0 and crash.error == "Exited with code 3"
    await m.sink.wait_for(StatusChanged, lambda e: (e.old_state, e.new_state) == ("stopped", "running"))

    for _ in range(5):  # wake-ups, duplicate events and a full resync change nothing
        m.queue.add(record.id)
        docker._announce(container, "die")
        await m.wakeups.resync()
        await m.idle()
    assert m.sink.transitions(record.id) == [("created", "running"), ("running", "stopped"), ("stopped", "running")]
    assert len(m.sink.crashes()) == 1 and len(m.sink.crash_activities()) == 1
    assert container.starts == 2, "restarted in place, once"


async def test_a_crash_in_back_off_is_reported_once_however_often_the_controller_looks(managers: Any) -> None:
    docker = FakeDocker()
    m = managers(docker)
    record = m.create()
    await m.reconciler.reconcile(record.id)
    container = docker.only(record.id)
    docker.exit_on_its_own(container.docker_id, 1)
    await m.reconciler.reconcile(record.id)  # first crash: restarted at once
    docker.exit_on_its_own(container.docker_id, 1)
    for _ in range(4):
        await m.reconciler.reconcile(record.id)
    assert [c.restart_in for c in m.sink.crashes()] == [0.0, 10.0]
    assert container.status == "exited" and container.starts == 2, "waiting out the back-off"
    assert m.view.known(record.id).waiting_reason == "CrashLoopBackOff"


# -- runs the manager ended itself, across a manager restart ----------------------------------------


@pytest.mark.parametrize("start_before_first_reconcile", [True, False])
async def test_a_run_the_manager_stopped_is_no_crash_after_a_manager_restart(managers: Any, start_before_first_reconcile: bool) -> None:
    docker = FakeDocker()
    first = await managers(docker).open()
    record = first.create()
    await first.converged(record)
    await first.converged(first.stop_intent(record.id))
    container = docker.only(record.id)
    assert container.status == "exited" and container.exit_code == 143

    second = managers(docker, await first.restarted())
    if start_before_first_reconcile:  # the client's start arrives before the new manager looked at the key
        started = second.start_intent(record.id)
        await second.open()
    else:
        await second.open()
        await second.converged(second.store.get(record.id))
        await second.idle()
        started = second.start_intent(record.id)
    await second.converged(started)
    assert container.status == "running" and container.starts == 2
    assert second.sink.crashes() == [] and second.sink.crash_activities() == [], second.sink.events
    assert second.view.known(record.id).crash_count == 0

    # The next real crash is the first one: restarted at once, no back-off earned by the stop.
    docker.exit_on_its_own(container.docker_id, 137)
    crash = await second.sink.wait_for(ContainerCrashed)
    assert crash.restart_in == 0.0 and crash.error == "Killed by signal 9"
    await second.sink.wait_for(StatusChanged, lambda e: (e.old_state, e.new_state) == ("stopped", "running"))
    assert container.starts == 3


async def test_a_restart_interrupted_by_a_manager_restart_is_no_crash(managers: Any) -> None:
    """The manager stopped the run (restart's first half) and died before starting it again."""
    docker = FakeDocker()
    first = managers(docker)
    record = first.create()
    await first.reconciler.reconcile(record.id)
    container = docker.only(record.id)
    asked = first.restart_intent(record.id)

    real_start = docker.start

    async def engine_fails_the_start(docker_id: str) -> None:
        raise DockerFailure("docker_api_error", "engine hiccup", operation="start_container", status=500)

    docker.start = engine_fails_the_start  # type: ignore[method-assign]
    with pytest.raises(DockerFailure):
        await first.reconciler.reconcile(record.id)
    docker.start = real_start  # type: ignore[method-assign]
    assert container.status == "exited" and container.exit_code == 143

    second = managers(docker, await first.restarted())
    await second.reconciler.reconcile(record.id)
    assert second.sink.crashes() == [] and second.sink.crash_activities() == [], second.sink.events
    assert container.status == "running" and container.starts == 2, "the restart is completed, once"
    assert second.store.get(record.id).status.observed_generation == asked.generation
    for _ in range(3):
        await second.reconciler.reconcile(record.id)
    assert container.starts == 2


async def test_a_restart_done_before_a_manager_restart_is_not_done_again(managers: Any) -> None:
    docker = FakeDocker()
    first = managers(docker)
    record = first.create()
    await first.reconciler.reconcile(record.id)
    first.restart_intent(record.id)
    await first.reconciler.reconcile(record.id)
    container = docker.only(record.id)
    assert container.starts == 2

    second = managers(docker, await first.restarted())
    for _ in range(3):
        await second.reconciler.reconcile(record.id)
    assert container.starts == 2 and second.sink.transitions(record.id) == [] and second.sink.crashes() == []


# -- back-off against a client's new intent ---------------------------------------------------------


@pytest.mark.parametrize("intent", ["start", "restart"])
async def test_a_back_off_found_in_the_same_reconcile_as_a_start_does_not_delay_it(managers: Any, intent: str) -> None:
    docker = FakeDocker()
    m = managers(docker)
    record = m.create()
    await m.reconciler.reconcile(record.id)
    container = docker.only(record.id)
    docker.exit_on_its_own(container.docker_id, 1)
    await m.reconciler.reconcile(record.id)  # first crash: restarted at once; the next one earns a back-off
    assert container.starts == 2

    docker.exit_on_its_own(container.docker_id, 1, announce=False)  # Docker has not told the manager yet
    asked = m.start_intent(record.id) if intent == "start" else m.restart_intent(record.id)
    await m.reconciler.reconcile(record.id)
    assert container.status == "running" and container.starts == 3, "the client's intent is applied now"
    assert m.store.get(record.id).status.observed_generation == asked.generation, "and answered now"
    crashes = m.sink.crashes()
    assert len(crashes) == 2 and crashes[1].restart_in == 0.0, "the crash is reported, with the truth about it"
    assert m.view.known(record.id).waiting_reason is None


async def test_a_start_converges_at_once_with_the_loop_running(managers: Any) -> None:
    docker = FakeDocker()
    m = await managers(docker).open()
    record = m.create()
    await m.converged(record)
    container = docker.only(record.id)
    docker.exit_on_its_own(container.docker_id, 1)
    await m.sink.wait_for(StatusChanged, lambda e: (e.old_state, e.new_state) == ("stopped", "running"))
    docker.exit_on_its_own(container.docker_id, 1, announce=False)
    began = time.monotonic()
    await m.converged(m.start_intent(record.id), timeout=3.0)  # the back-off would be 10 s
    assert time.monotonic() - began < 3.0 and container.status == "running"


# -- restarts decided from Docker's own facts -------------------------------------------------------


@pytest.mark.parametrize("offset", [-3600.0, 3600.0], ids=["docker-clock-lags", "docker-clock-ahead"])
async def test_a_restart_happens_once_whatever_dockers_clock_says(managers: Any, offset: float) -> None:
    docker = FakeDocker(clock_offset=offset)
    m = managers(docker)
    record = m.create()
    await m.reconciler.reconcile(record.id)
    container = docker.only(record.id)
    asked = m.restart_intent(record.id)
    await m.reconciler.reconcile(record.id)
    assert container.starts == 2, "restarted"
    assert m.store.get(record.id).status.observed_generation == asked.generation
    for _ in range(4):
        await m.reconciler.reconcile(record.id)
    assert container.starts == 2, "and only once"
    assert m.sink.crashes() == []


# -- the engine going away and coming back -------------------------------------------------------


async def test_engine_loss_and_return(managers: Any) -> None:
    docker = FakeDocker()
    m = await managers(docker).open()
    running, stopped = m.create("r"), m.create("s")
    await m.converged(running)
    await m.converged(stopped)
    await m.converged(m.stop_intent(stopped.id))

    docker.go_down(stop_containers=True)  # a daemon restarted without live-restore stops its containers
    await m.sink.wait_for(EngineStatus, lambda s: not s.available)
    await m.sink.wait_for(StatusChanged, lambda e: e.new_state == "unknown", count=2)
    kept = m.stop_intent(running.id)  # an intent during the outage is answered at once, and kept
    current = await m.store.wait_for(running.id, lambda r: r is not None and r.status.error_generation >= kept.generation, 3.0)
    assert current is not None and current.status.error is not None
    assert current.status.error.details["reason"] == "docker_unreachable"
    back = m.start_intent(running.id)

    docker.come_back()
    await m.sink.wait_for(EngineStatus, lambda s: s.available)
    await m.converged(back)
    await m.sink.wait_for(StatusChanged, lambda e: e.container_id == running.id and e.new_state == "running", count=2)
    await m.idle()
    assert m.sink.transitions(running.id) == [("created", "running"), ("running", "unknown"), ("unknown", "stopped"), ("stopped", "running")]
    assert m.sink.transitions(stopped.id) == [("created", "running"), ("running", "stopped"), ("stopped", "unknown"), ("unknown", "stopped")]
    assert m.sink.crashes() == [], "the engine stopped them, not a crash"
    assert len(m.sink.of(EngineStatus)) == 2


# -- status requests answer from what the controller observed -------------------------------------


async def test_a_status_read_does_not_call_docker_and_follows_the_event_stream(managers: Any) -> None:
    docker = FakeDocker()
    m = managers(docker)  # its loop is not running yet: every Docker call below is the status read's own
    record = m.create()
    await m.reconciler.reconcile(record.id)
    reader = m.reader
    docker.calls.clear()
    status = await reader.status(m.store.get(record.id))
    assert status.state == "running" and status.docker_id == docker.only(record.id).docker_id
    assert set(docker.calls) <= {"container_stats"}, "resource usage (no cgroups for a fake) is all it asks"
    assert m.queue.pending() == 1, "the read woke the key, for the controller to look again"

    await m.open()
    await m.idle()
    docker.exit_on_its_own(docker.only(record.id).docker_id, 2)
    await m.sink.wait_for(ContainerCrashed)
    await m.idle()
    status = await reader.status(m.store.get(record.id))
    assert status.state == "running" and status.crash_count == 1


async def test_a_status_read_right_after_a_manager_restart_waits_for_the_first_look(managers: Any) -> None:
    docker = FakeDocker()
    first = await managers(docker).open()
    record = first.create()
    await first.converged(record)
    await first.converged(first.stop_intent(record.id))
    second = managers(docker, await first.restarted())
    reader = second.reader
    reading = asyncio.create_task(reader.status(second.store.get(record.id)))
    await asyncio.sleep(0.05)
    assert not reading.done(), "nothing observed yet: the read waits for the controller"
    second.start()
    status = await asyncio.wait_for(reading, 3.0)
    assert status.state == "stopped" and status.exit_code == 143


async def test_a_status_read_waiting_for_a_first_look_that_fails_is_answered_at_once(managers: Any) -> None:
    docker = FakeDocker()
    first = managers(docker)
    record = first.create()
    await first.reconciler.reconcile(record.id)
    second = managers(docker, await first.restarted())

    async def refused(container_id: str) -> list[Any]:
        raise DockerFailure("docker_api_error", "permission denied", operation="list_containers", status=403, permanent=True)

    docker.observe = refused  # type: ignore[method-assign]
    reader = second.reader
    await second.open()
    began = time.monotonic()
    with pytest.raises(NotObserved, match="permission denied"):
        await reader.status(second.store.get(record.id), wait=30.0)
    assert time.monotonic() - began < 3.0
