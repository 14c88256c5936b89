"""Container logs for the API: a bounded read, and who follows which container (api/log_follower.py).

Reads go to the managed container's current Docker container (from controller/view.py) through the
Docker adapter; an answer holds at most MAX_ANSWER_BYTES of text (the newest lines are kept and
`truncated` says so). Follows belong to a connection: at most MAX_FOLLOWS_PER_CLIENT, all stopped when it
disconnects.
"""

from __future__ import annotations

import asyncio
from typing import Any

from api.emitter import Emitter
from api.errors import ApiError
from api.log_follower import LogFollower, log_line
from controller.adapters.docker import DockerAdapter, DockerFailure
from controller.adapters.docker.logs import STREAMS
from controller.observed import ABSENT
from controller.view import Observations
from store import MemoryStore

MAX_ANSWER_BYTES = 1 << 20  # text bytes of one container_logs answer
MAX_FOLLOWS_PER_CLIENT = 16


class ContainerLogs:
    def __init__(self, docker: DockerAdapter, store: MemoryStore, view: Observations, emitter: Emitter) -> None:
        self.docker, self.store, self.view, self.emitter = docker, store, view, emitter
        self.follows: dict[tuple[str, str], LogFollower] = {}  # (sid, container id) -> its follower

    async def read(self, container_id: str, *, tail: int, since: float | None, timestamps: bool, stdout: bool, stderr: bool) -> dict[str, Any]:
        _, docker_id = self.view.current(container_id, ABSENT)
        lines = []
        if docker_id is not None and tail:
            streams = tuple(name for name, wanted in zip(STREAMS, (stdout, stderr)) if wanted)
            try:
                lines = await self.docker.read_logs(docker_id, streams=streams, tail=tail, since=since)
            except DockerFailure as failure:
                if failure.error_type != "container_not_found":  # removed since the controller looked: nothing printed
                    raise ApiError(failure.error_type, failure.message, container_id=container_id, **failure.details) from None
        kept, size = len(lines), 0
        for index in range(len(lines) - 1, -1, -1):  # the newest lines that fit
            size += len(lines[index].text.encode()) + 64
            if size > MAX_ANSWER_BYTES:
                kept = len(lines) - 1 - index
                break
        answer = [log_line(line, timestamps) for line in lines[len(lines) - kept :]]
        return {"container_id": container_id, "lines": answer, "truncated": kept < len(lines)}

    def follow(self, sid: str, container_id: str, tail: int) -> bool:
        """Start following; False if this connection already follows the container (nothing changes)."""
        if (sid, container_id) in self.follows:
            return False
        if sum(1 for owner, _ in self.follows if owner == sid) >= MAX_FOLLOWS_PER_CLIENT:
            raise ApiError(
                "validation_error",
                f"a connection may follow at most {MAX_FOLLOWS_PER_CLIENT} containers' logs",
                field="container_id",
                limit="max_follows",
                max=MAX_FOLLOWS_PER_CLIENT,
            )
        follower = LogFollower(
            sid,
            container_id,
            tail,
            docker=self.docker,
            store=self.store,
            view=self.view,
            emitter=self.emitter,
            backlog=self.emitter.backlog,
            on_end=self._ended,
        )
        self.follows[(sid, container_id)] = follower
        follower.start()
        return True

    def _ended(self, follower: LogFollower) -> None:
        if self.follows.get((follower.sid, follower.container_id)) is follower:
            del self.follows[(follower.sid, follower.container_id)]

    async def unfollow(self, sid: str, container_id: str) -> bool:
        follower = self.follows.pop((sid, container_id), None)
        if follower is not None:
            await follower.stop()
        return follower is not None

    async def forget(self, sid: str) -> None:
        """The connection left: its follows end (no final event: nobody would receive it)."""
        for key in [key for key in self.follows if key[0] == sid]:
            await self.follows.pop(key).stop()

    async def close(self) -> None:
        await asyncio.gather(*(follower.stop() for follower in self.follows.values()))
        self.follows.clear()
