"""Socket.IO request handlers: validate, write intent, await the outcome, answer.

A handler never calls Docker. It changes the desired-state record and waits
until the controller reports that generation converged (or failed), so a
response always describes what Docker really did. Reads answer from what the
controller last observed (controller/view.py); the one exception is
`get_container_status`'s resource usage when the cgroup files are not visible
(Docker's stats API, see controller/status.py). Every handler answers twice in
the same shape: the reference's response event to the caller, and the
Socket.IO acknowledgement (for `call()` / `emitWithAck()`).

One async handler per event, grouped by concern: connection.py (connect,
disconnect, rejected and unknown events), lifecycle.py (create ... delete),
messaging.py (send_message, subscribe_messages), reads.py (status, list), logs.py (read and follow output);
base.py holds the path every request takes. This module names the events.
"""

from __future__ import annotations

from api.handlers.base import ApiSettings, Route
from api.handlers.connection import ConnectionHandlers
from api.handlers.lifecycle import LifecycleHandlers
from api.handlers.logs import LogHandlers
from api.handlers.messaging import MessagingHandlers
from api.handlers.reads import ReadHandlers
from api.packet_gate import REJECTED_EVENT
from api.schemas import ContainerRef, CreateContainer, FollowLogs, GetContainerLogs, ListContainers, SendMessage, SubscribeMessages, UpdateContainer

__all__ = ["ApiSettings", "Handlers", "Route"]


class Handlers(ConnectionHandlers, LifecycleHandlers, MessagingHandlers, ReadHandlers, LogHandlers):
    def register(self) -> None:
        self.sio.on("connect", self.connect)
        self.sio.on("disconnect", self.disconnect)
        routes = {
            "create_container": Route("container_created", CreateContainer, self.create),
            "start_container": Route("container_started", ContainerRef, self.start),
            "stop_container": Route("container_stopped", ContainerRef, self.stop),
            "restart_container": Route("container_restarted", ContainerRef, self.restart),
            "update_container": Route("container_updated", UpdateContainer, self.update),
            "delete_container": Route("container_deleted", ContainerRef, self.delete),
            "send_message": Route("message_sent", SendMessage, self.send_message),
            "get_container_status": Route("container_status", ContainerRef, self.status),
            "list_containers": Route("container_list", ListContainers, self.list, body_optional=True),
            # extension: narrow this client's message_received to some containers
            "subscribe_messages": Route("messages_subscribed", SubscribeMessages, self.subscribe_messages, per_client=True),
            # extensions: a container's output (api/container_logs.py)
            "get_container_logs": Route("container_logs", GetContainerLogs, self.get_logs),
            "follow_logs": Route("logs_followed", FollowLogs, self.follow_logs, per_client=True),
            "unfollow_logs": Route("logs_unfollowed", ContainerRef, self.unfollow_logs, per_client=True),
            **self.extensions,
        }
        for operation, route in routes.items():
            self.sio.on(operation, self._route(operation, route))
        self.operations = frozenset(routes)
        self.sio.on(REJECTED_EVENT, self.rejected)
        self.sio.on("*", self.unknown_event)
