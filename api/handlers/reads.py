"""Requests that only read: one container's status, and the list of managed containers.

Both answer from what the controller last observed (controller/view.py, which owns the state rule);
neither calls Docker, except for a status's resource usage when the cgroup files are not visible.
"""

from __future__ import annotations

from typing import Any

from api import payloads
from api.errors import ApiError
from api.handlers.base import HandlerBase
from api.schemas import ContainerRef, ListContainers
from controller.observed import ABSENT
from controller.view import NotObserved
from store import DesiredState


class ReadHandlers(HandlerBase):
    async def status(self, request: ContainerRef) -> dict[str, Any]:
        record = self._record(request.container_id)
        try:
            status = await self.reader.status(record, wait=self.settings.request_timeout)
        except NotObserved as exc:  # only right after the manager started, before the controller could look
            raise ApiError("system_error", str(exc), container_id=record.id, retrying=True) from None
        return payloads.container_status(status)

    async def list(self, request: ListContainers) -> dict[str, Any]:
        entries = []
        for record in self.store.intents():  # what clients asked for last, on disk or not yet (as every request reads)
            if record.desired is DesiredState.DELETED:
                continue
            # No container observed for the record (not created in Docker yet, or removed behind the
            # manager's back): `deleted`, the documented state of a container that does not exist, as
            # get_container_status reports it.
            state, docker_id = self.view.current(record.id, ABSENT)
            entries.append(
                {
                    "id": record.id,
                    "name": record.spec.name,
                    "status": state,
                    "image": record.spec.image,
                    "created": payloads.iso(record.created_at),
                    "socket_path": payloads.socket_path(self.settings.socket_dir, record.spec.name),
                    "ports": dict(record.spec.ports),
                    "docker_id": docker_id,
                    "desired_state": record.desired.value,
                }
            )
        return {"containers": entries, "count": len(entries)}
