"""The only module that talks to Docker.

Every call goes through `_call`: transient failures are retried with tenacity's
exponential back-off, permanent ones fail at once (controller.adapters.docker.failures
decides which is which). Failures leave here as DockerFailure, already in the
API's error terms. Each call is timed by operation and outcome (controller/metrics.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import Any, AsyncIterator, Awaitable, BinaryIO, Callable, TypeVar

import aiodocker
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from controller import labels, metrics
from controller.adapters.docker import logs, tracing
from controller.adapters.docker.failures import DockerFailure, _docker_message, classify, is_transient
from controller.adapters.docker.index import ContainerIndex
from controller.observed import Listed, Observed

log = logging.getLogger("flow_manager.docker")
T = TypeVar("T")


class DockerAdapter:
    def __init__(
        self,
        url: str | None = None,
        *,
        instance: str = "default",
        attempts: int = 4,
        stop_timeout: int = 10,
        on_unreachable: Callable[[], None] = lambda: None,
        pull_missing: bool = False,
    ) -> None:
        self.url = url
        self.on_unreachable = on_unreachable  # the engine watch checks at once (controller.engine.Suspicion)
        self.pull_missing = pull_missing  # pull an image that is not present? Only if the operator allows it
        self.instance = instance
        self.attempts = attempts
        self.stop_timeout = stop_timeout
        self.docker = aiodocker.Docker(url=url)
        self.calls: collections.Counter[str] = collections.Counter()  # by operation, for get_metrics
        self.index = ContainerIndex()

    async def close(self) -> None:
        await self.docker.close()

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls[operation] += 1
        started, outcome = time.perf_counter(), "cancelled"
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_transient),
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                reraise=True,
            ):
                with attempt, tracing.operation(operation):
                    result = await call()
                    outcome = "ok"
                    return result
        except Exception as exc:
            failure = classify(exc, operation)
            unreachable = failure.details.get("reason") == "docker_unreachable"
            outcome = "unreachable" if unreachable else failure.error_type
            if unreachable:
                self.on_unreachable()
            raise failure from exc
        finally:
            # operation: one of this module's names; outcome: ok, unreachable or an error type (bounded both)
            metrics.DOCKER_CALL_DURATION.record(time.perf_counter() - started, {"operation": operation, "outcome": outcome})
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """One cheap round trip (no retries): the engine watch decides what a failure means."""
        with tracing.operation("ping"):
            await self.docker.version()

    # -- reading -------------------------------------------------------------
    async def inspect(self, docker_id: str) -> Observed | None:
        async def call() -> Observed | None:
            try:
                info = await self.docker.containers.container(docker_id).show()
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return None
                raise
            return Observed.from_inspect(info)

        return await self._call("inspect_container", call)

    async def observe(self, container_id: str) -> list[Observed]:
        """Every Docker container carrying this managed id (normally one).

        With a valid index only the containers it knows are inspected (one call,
        none for a key without containers); otherwise Docker is listed by label.
        """
        known = self.index.lookup(container_id)
        if known is None:
            found = await self._call(
                "list_containers", lambda: self.docker.containers.list(all=True, filters=labels.managed_filter(self.instance, container_id))
            )
            known = [c.id for c in found]
            for docker_id in known:
                self.index.add(container_id, docker_id)
        observed = [await self.inspect(docker_id) for docker_id in known]
        for docker_id, seen in zip(known, observed):
            if seen is None:
                self.index.discard(docker_id)
        return [o for o in observed if o is not None]

    async def managed_ids(self) -> dict[str, list[str]]:
        """managed id -> docker ids."""
        result: dict[str, list[str]] = {}
        for entry in await self.list_managed():
            if entry.managed_id:
                result.setdefault(entry.managed_id, []).append(entry.docker_id)
        return result

    async def list_managed(self) -> list[Listed]:
        """Every container of this instance with its state, in one call (which also refreshes the index)."""
        mark = self.index.listing_started()
        try:
            found = await self._call("list_containers", lambda: self.docker.containers.list(all=True, filters=labels.managed_filter(self.instance)))
        except BaseException:
            self.index.listing_failed()
            raise
        listed = [Listed.from_list(container._container) for container in found]
        by_key: dict[str, list[str]] = {}
        for entry in listed:
            if entry.managed_id:
                by_key.setdefault(entry.managed_id, []).append(entry.docker_id)
        self.index.listing_done(mark, by_key)
        return listed

    async def logs_tail(self, docker_id: str, lines: int = 50) -> str:
        try:
            chunks = await self._call("container_logs", lambda: self.docker.containers.container(docker_id).log(stdout=True, stderr=True, tail=lines))
        except DockerFailure:
            return ""
        return "".join(chunks)[-8192:]

    async def read_logs(self, docker_id: str, *, streams: tuple[str, ...], tail: int, since: float | None) -> list[logs.LogLine]:
        """The last `tail` lines of the chosen streams, in time order (controller/adapters/docker/logs.py)."""
        return await self._call("container_logs", lambda: logs.read(self.docker, docker_id, streams=streams, tail=tail, since=since))

    def follow_logs(self, docker_id: str, stream: str, *, since: float | None, tail: int | None = None) -> AsyncIterator[logs.LogLine]:
        """One stream of one Docker container until it stops; not retried (a follower attaches again)."""
        self.calls["follow_logs"] += 1
        return logs.follow(self.docker, docker_id, stream, since, tail)

    async def stats(self, docker_id: str) -> dict[str, Any] | None:
        result = await self._call("container_stats", lambda: self.docker.containers.container(docker_id).stats(stream=False))
        return result[0] if result else None

    # -- acting --------------------------------------------------------------
    async def pull(self, image: str) -> None:
        try:
            with tracing.operation("pull_image"):
                await self.docker.images.pull(image, timeout=120)
        except Exception as exc:
            raise DockerFailure(
                "image_not_found",
                f"image {image!r} is not present and could not be pulled: {_docker_message(exc) if isinstance(exc, aiodocker.DockerError) else exc}",
                operation="pull_image",
                permanent=True,
                details={"image": image},
            ) from exc

    async def create(self, body: dict[str, Any], name: str) -> str:
        image = body["Image"]
        try:  # the image is nearly always there: ask Docker only when the create says it is not
            container = await self._call("create_container", lambda: self.docker.containers.create(body, name=name))
        except DockerFailure as failure:
            if failure.error_type != "image_not_found":
                raise
            if not self.pull_missing:
                raise DockerFailure(
                    "image_not_found",
                    f"image {image!r} is not present locally and this manager does not pull images (--pull-images)",
                    operation="create_container",
                    permanent=True,
                    details={"image": image},
                ) from failure
            await self.pull(image)
            container = await self._call("create_container", lambda: self.docker.containers.create(body, name=name))
        managed_id = (body.get("Labels") or {}).get(labels.CONTAINER_ID)
        if managed_id:
            self.index.add(managed_id, container.id)
        return container.id

    async def start(self, docker_id: str) -> None:
        await self._call("start_container", lambda: self.docker.containers.container(docker_id).start())

    async def stop(self, docker_id: str) -> None:
        await self._call(
            "stop_container", lambda: self.docker.containers.container(docker_id).stop(t=self.stop_timeout, timeout=self.stop_timeout + 30)
        )

    async def put_archive(self, docker_id: str, path: str, archive: bytes | BinaryIO) -> None:
        """Extract a tar archive into the container at `path`; an open file is streamed from its start at
        every attempt (through a duplicate descriptor: aiohttp closes what it sent), never read into memory."""

        async def call() -> None:
            if isinstance(archive, bytes):
                await self.docker.containers.container(docker_id).put_archive(path, archive)
                return
            with os.fdopen(os.dup(archive.fileno()), "rb") as data:
                data.seek(0)
                await self.docker.containers.container(docker_id).put_archive(path, data)

        await self._call("put_archive", call)

    async def rename(self, docker_id: str, name: str) -> None:
        await self._call("rename_container", lambda: self.docker.containers.container(docker_id).rename(name))

    async def unpause(self, docker_id: str) -> None:
        await self._call("unpause_container", lambda: self.docker.containers.container(docker_id).unpause())

    async def remove(self, docker_id: str) -> None:
        async def call() -> None:
            try:
                await self.docker.containers.container(docker_id).delete(force=True, v=True)
            except aiodocker.DockerError as exc:
                if exc.status != 404:  # already gone is what we wanted
                    raise

        await self._call("delete_container", call)
        self.index.discard(docker_id)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Docker's event stream for our containers; ends when the daemon goes away."""
        subscriber = self.docker.events.subscribe(create_task=False)  # one stream: ours, filtered
        with tracing.operation("events"):  # the task takes the context as it is now
            runner = asyncio.create_task(self.docker.events.run(filters={"type": ["container"], **labels.managed_filter(self.instance)}))
        self.index.follow()
        try:
            while True:
                event = await subscriber.get()
                if event is None:
                    break
                self.index.event(event)
                yield event
            if runner.done() and runner.exception():
                raise classify(runner.exception(), "docker_events")  # type: ignore[arg-type]
        finally:
            self.index.invalidate()  # events may be missed until the next full list
            runner.cancel()
            try:
                await runner
            except (asyncio.CancelledError, Exception):
                pass
