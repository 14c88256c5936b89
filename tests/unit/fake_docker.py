"""An in-memory Docker engine with the interface the controller uses (controller/adapters/docker.DockerAdapter).

Unit tests of the reconcile loop drive it instead of a real engine. It keeps only what the controller
reads: containers with labels, a state, and Docker's own timestamps (`StartedAt`, `FinishedAt`) taken
from its own clock, which a test may set far from the manager's (`clock_offset`). Containers can exit
by themselves (`exit_on_its_own`), with or without an event on the stream, and the whole engine can go
away and come back (`go_down`, `come_back`). Every call is counted in `calls`, so a test can say that
something did not call Docker.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

from controller import labels
from controller.adapters.docker import DockerFailure
from controller.observed import Listed, Observed

NEVER = "0001-01-01T00:00:00Z"


@dataclass
class FakeContainer:
    docker_id: str
    name: str
    labels: dict[str, str]
    image: str
    created: str
    status: str = "created"
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = NEVER
    finished_at: str = NEVER
    pid: int = 0
    starts: int = 0

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.docker_id,
            "Name": "/" + self.name,
            "Created": self.created,
            "Config": {"Labels": dict(self.labels), "Image": self.image},
            "State": {
                "Status": self.status,
                "Running": self.status == "running",
                "Paused": False,
                "ExitCode": self.exit_code,
                "OOMKilled": self.oom_killed,
                "Error": "",
                "Pid": self.pid,
                "StartedAt": self.started_at,
                "FinishedAt": self.finished_at,
            },
        }


@dataclass
class FakeDocker:
    clock_offset: float = 0.0  # seconds Docker's clock is ahead of the manager's (negative: it lags)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    down: bool = False
    on_unreachable: Callable[[], None] = lambda: None
    _streams: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)
    _last_stamp: float = 0.0

    # -- the engine's clock ----------------------------------------------------------------
    def stamp(self) -> str:
        """Docker's time now, as Docker writes it (nanoseconds, UTC); strictly increasing."""
        now = max(time.time() + self.clock_offset, self._last_stamp + 1e-6)
        self._last_stamp = now
        return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

    # -- what a test does behind the manager's back ------------------------------------------
    def exit_on_its_own(self, docker_id: str, exit_code: int = 1, announce: bool = True) -> None:
        """The container's process ends (a crash, `docker kill`); `announce=False`: no event yet."""
        container = self.containers[docker_id]
        container.status, container.exit_code, container.finished_at, container.pid = "exited", exit_code, self.stamp(), 0
        if announce:
            self._announce(container, "die")

    def go_down(self, stop_containers: bool = False) -> None:
        """The engine goes away (its event streams end, every call fails); optionally it stops its containers
        first, as a daemon restarted without live-restore does."""
        if stop_containers:
            for container in self.containers.values():
                if container.status == "running":
                    self.exit_on_its_own(container.docker_id, 0, announce=False)
        self.down = True
        for stream in self._streams:
            stream.put_nowait(None)

    def come_back(self) -> None:
        self.down = False

    async def streaming(self, timeout: float = 3.0) -> None:
        """Until an event stream is open (the manager's engine watch subscribes shortly after it starts)."""
        deadline = time.monotonic() + timeout
        while not self._streams:
            assert time.monotonic() < deadline, "nobody subscribed to the event stream"
            await asyncio.sleep(0.005)

    def only(self, managed_id: str) -> FakeContainer:
        found = [c for c in self.containers.values() if c.labels.get(labels.CONTAINER_ID) == managed_id]
        assert len(found) == 1, found
        return found[0]

    # -- the adapter's interface -----------------------------------------------------------
    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.down:
            self.on_unreachable()
            raise DockerFailure(
                "docker_api_error", "Docker engine unreachable: fake engine down", operation=operation, details={"reason": "docker_unreachable"}
            )

    def _announce(self, container: FakeContainer, action: str) -> None:
        event = {"Type": "container", "Action": action, "status": action, "Actor": {"ID": container.docker_id, "Attributes": dict(container.labels)}}
        for stream in self._streams:
            stream.put_nowait(event)

    def _get(self, docker_id: str, operation: str) -> FakeContainer:
        container = self.containers.get(docker_id)
        if container is None:
            raise DockerFailure("container_not_found", f"No such container: {docker_id}", operation=operation, status=404, permanent=True)
        return container

    async def ping(self) -> None:
        self._call("ping")

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        self._call("events")
        stream: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._streams.append(stream)
        try:
            while (event := await stream.get()) is not None:
                yield event
        finally:
            self._streams.remove(stream)

    async def inspect(self, docker_id: str) -> Observed | None:
        self._call("inspect_container")
        container = self.containers.get(docker_id)
        return Observed.from_inspect(container.inspect()) if container else None

    async def observe(self, container_id: str) -> list[Observed]:
        self._call("list_containers")
        return [
            Observed.from_inspect(c.inspect())
            for c in sorted(self.containers.values(), key=lambda c: c.created)
            if c.labels.get(labels.CONTAINER_ID) == container_id
        ]

    async def managed_ids(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for entry in await self.list_managed():
            result.setdefault(entry.managed_id, []).append(entry.docker_id)
        return result

    async def list_managed(self) -> list[Listed]:
        self._call("list_containers")
        return [Listed(c.docker_id, c.labels.get(labels.CONTAINER_ID, ""), c.status, None) for c in self.containers.values()]

    async def logs_tail(self, docker_id: str, lines: int = 50) -> str:
        self._call("container_logs")
        return "the last lines\n"

    async def stats(self, docker_id: str) -> dict[str, Any] | None:
        self._call("container_stats")
        return None

    async def create(self, body: dict[str, Any], name: str) -> str:
        self._call("create_container")
        if any(c.name == name for c in self.containers.values()):
            raise DockerFailure("docker_api_error", f"Conflict: name {name} in use", operation="create_container", status=409, permanent=True)
        docker_id = secrets.token_hex(32)
        container = FakeContainer(docker_id, name, dict(body["Labels"]), body["Image"], self.stamp())
        self.containers[docker_id] = container
        self._announce(container, "create")
        return docker_id

    async def start(self, docker_id: str) -> None:
        self._call("start_container")
        container = self._get(docker_id, "start_container")
        if container.status != "running":
            container.status, container.started_at, container.exit_code = "running", self.stamp(), 0
            container.pid, container.starts = 4242, container.starts + 1
            self._announce(container, "start")

    async def stop(self, docker_id: str) -> None:
        self._call("stop_container")
        container = self._get(docker_id, "stop_container")
        if container.status == "running":
            container.status, container.exit_code, container.finished_at, container.pid = "exited", 143, self.stamp(), 0
            self._announce(container, "die")

    async def unpause(self, docker_id: str) -> None:
        self._call("unpause_container")
        self._get(docker_id, "unpause_container")

    async def rename(self, docker_id: str, name: str) -> None:
        self._call("rename_container")
        self._get(docker_id, "rename_container").name = name

    async def remove(self, docker_id: str) -> None:
        self._call("delete_container")
        container = self.containers.pop(docker_id, None)
        if container is not None:
            self._announce(container, "destroy")

    async def put_archive(self, docker_id: str, path: str, archive: bytes) -> None:
        self._call("put_archive")
        self._get(docker_id, "put_archive")
