"""What every phase shares: the manager under test, its clients, the Docker baselines, and the sizes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiodocker

from bench.client import BenchClient
from bench.docker_direct import DirectDocker
from bench.processes import Child

IMAGE = "flow:latest"


@dataclass(frozen=True)
class Sizes:
    """How much each phase does; `quick()` is a smoke test, not a measurement."""

    intent: int = 20  # target 1: sequential create+start through the manager (and directly)
    level_sample: int = 8  # intent-to-running samples at each later level (plots)
    fanout: int = 100  # target 2
    clients: int = 10  # targets 2, 3, 5
    pings: int = 1000  # target 3, one client
    load_seconds: float = 5.0  # target 3, ten clients
    churn: int = 100  # target 5
    scale: int = 200  # targets 4 and 6
    idle_seconds: float = 35.0  # target 4: window for CPU and status rounds (default status interval 10 s)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(intent=4, level_sample=2, fanout=10, clients=4, pings=200, load_seconds=2.0, churn=8, scale=24, idle_seconds=12.0)


@dataclass
class Session:
    run_id: str
    workdir: Path
    sizes: Sizes
    manager: Child
    docker: aiodocker.Docker
    direct: DirectDocker
    main: BenchClient
    running: list[str] = field(default_factory=list)  # managed container ids that run, oldest first
    _names: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.manager.port}"

    def name(self, tag: str) -> str:
        self._names += 1
        return f"fmbench-{self.run_id}-{tag}-{self._names}"

    async def metrics(self, reset: bool = False) -> dict[str, Any]:
        return (await self.main.metrics(reset)).model_dump()

    @contextlib.asynccontextmanager
    async def clients(self, count: int) -> AsyncIterator[list[BenchClient]]:
        connected = [await BenchClient(self.url).connect() for _ in range(count)]
        try:
            yield connected
        finally:
            await asyncio.gather(*(c.close() for c in connected), return_exceptions=True)


async def create_start(client: BenchClient, name: str) -> tuple[float, float, str]:
    """create_container then start_container through the manager: (create s, start s, container_id).

    Each call returns when the manager answers (acknowledgement = the response event), i.e. when
    `container_created` / `container_started` is sent.
    """
    started = time.perf_counter()
    created = await client.create(IMAGE, name=name)
    mid = time.perf_counter()
    await client.start(created.container_id)
    return mid - started, time.perf_counter() - mid, created.container_id
