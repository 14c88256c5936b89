"""Requests about a container's link: send a message to it, and choose whose messages this client receives.

A message goes to the container's Unix-socket link (controller/links.py) and its activity is published;
a link failure is the documented error with the link's details (delivered or not).
"""

from __future__ import annotations

from typing import Any

from api.errors import ApiError
from api.handlers.base import HandlerBase
from api.schemas import SendMessage, SubscribeMessages
from controller.adapters.links import LinkFailure
from controller.events import Activity


class MessagingHandlers(HandlerBase):
    async def send_message(self, request: SendMessage) -> dict[str, Any]:
        record = self._record(request.container_id)
        try:
            await self.links.send(record.id, request.message)
        except LinkFailure as failure:
            raise ApiError(failure.error_type, failure.message, container_id=record.id, **failure.details) from None
        command = request.message.get("command")
        self.broadcaster.publish(
            Activity(
                "message_sent", record.id, f"Message sent to container {record.spec.name}", {"command": command if isinstance(command, str) else None}
            )
        )
        return {"container_id": record.id, "message": request.message, "status": "sent"}

    async def subscribe_messages(self, request: SubscribeMessages, sid: str) -> dict[str, Any]:
        """Every reference must name a managed container (ids or names); the answer lists their ids."""
        if request.container_ids is None:
            self.broadcaster.subscribe(sid, None)
            return {"container_ids": None}
        ids = sorted({self._record(reference).id for reference in request.container_ids})
        self.broadcaster.subscribe(sid, frozenset(ids))
        return {"container_ids": ids}
