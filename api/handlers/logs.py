"""Requests about a container's output: read its recent lines, follow it, stop following it.

Extensions beside the reference (README, Extensions): the Docker reads and the follows themselves live
in api/container_logs.py; these handlers resolve the reference, as every request does, and answer.
"""

from __future__ import annotations

from typing import Any

from api.handlers.base import HandlerBase
from api.schemas import ContainerRef, FollowLogs, GetContainerLogs


class LogHandlers(HandlerBase):
    async def get_logs(self, request: GetContainerLogs) -> dict[str, Any]:
        record = self._record(request.container_id)
        return await self.logs.read(
            record.id, tail=request.tail, since=request.since_seconds, timestamps=request.timestamps, stdout=request.stdout, stderr=request.stderr
        )

    async def follow_logs(self, request: FollowLogs, sid: str) -> dict[str, Any]:
        record = self._record(request.container_id)
        self.logs.follow(sid, record.id, request.tail)
        return {"container_id": record.id, "following": True}

    async def unfollow_logs(self, request: ContainerRef, sid: str) -> dict[str, Any]:
        """Unfollowing a container this connection does not follow is not an error (it is not followed after)."""
        record = self._record(request.container_id)
        await self.logs.unfollow(sid, record.id)
        return {"container_id": record.id, "following": False}
