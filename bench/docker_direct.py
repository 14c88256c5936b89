"""The Docker baselines: the manager's work done straight through aiodocker, in the same run.

"Same body" is the manager's own create body (controller.container_config,
with its link bind mount, HostConfig.Init, no-new-privileges, labels and
environment), so a ratio against it isolates what the manager adds. "Plain"
is a bare {"Image": ...} create, reported beside it to show what the
container configuration itself costs on this engine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiodocker

from controller import labels
from controller.adapters.links import LinkManager
from controller.container_config import ContainerDefaults, docker_create_body
from store import ContainerSpec, DesiredState, Record
from store.code import CODE_DIR
from store.records import new_container_id


class DirectDocker:
    def __init__(self, docker: aiodocker.Docker, instance: str, workdir: Path, image: str = "flow:latest") -> None:
        self.docker, self.instance, self.image = docker, instance, image
        self.defaults = ContainerDefaults(instance=instance)
        self.links = LinkManager(str(workdir / "direct-sockets"), sink=None)  # type: ignore[arg-type]  # paths only

    def same_body(self, name: str) -> dict[str, Any]:
        record = Record(
            id=new_container_id(), spec=ContainerSpec(image=self.image, name=name), desired=DesiredState.RUNNING, generation=1, created_at=time.time()
        )
        self.links.link_dir(record.id).mkdir(parents=True, exist_ok=True)  # the manager prepares it too
        binds, env = self.links.inputs(record)
        return docker_create_body(record, self.defaults, binds, {**env, "FLOW_CODE_DIR": CODE_DIR})

    def plain_body(self, name: str) -> dict[str, Any]:
        # Labels only so that cleanup finds it; no HostConfig at all.
        return {"Image": self.image, "Labels": {labels.MANAGED: "true", labels.INSTANCE: self.instance}}

    async def create_start(self, body: dict[str, Any], name: str) -> tuple[float, float, str]:
        """(create seconds, start seconds, docker id)."""
        started = time.perf_counter()
        container = await self.docker.containers.create(body, name=name)
        created = time.perf_counter()
        await container.start()
        return created - started, time.perf_counter() - created, container.id

    async def fanout(self, names: list[str]) -> tuple[float, list[float], list[str]]:
        """Every create+start at once; (makespan seconds, per-container seconds, docker ids)."""
        started = time.perf_counter()

        async def one(name: str) -> tuple[float, str]:
            create, start, docker_id = await self.create_start(self.same_body(name), name)
            return create + start, docker_id

        done = await asyncio.gather(*(one(n) for n in names))
        return time.perf_counter() - started, [d[0] for d in done], [d[1] for d in done]

    async def remove(self, docker_ids: list[str], concurrency: int = 20) -> None:
        slots = asyncio.Semaphore(concurrency)

        async def one(docker_id: str) -> None:
            async with slots:
                try:
                    await self.docker.containers.container(docker_id).delete(force=True)
                except aiodocker.DockerError as exc:
                    if exc.status != 404:
                        raise

        await asyncio.gather(*(one(d) for d in docker_ids))
