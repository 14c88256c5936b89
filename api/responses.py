"""Pydantic models of every response and server event, in the API reference's shapes (with the extensions).

The server builds its payloads in api/payloads.py and the handlers; tests/unit/test_responses.py checks
that every payload it builds fits these models exactly (no field missing, none unknown), and the Python
client (flow_manager/client) parses what it receives with them, so the two cannot drift apart silently.
Models accept unknown fields (a newer server may add extensions); pydantic only, nothing of the server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# -- responses ---------------------------------------------------------------------------------------
class ContainerCreated(Payload):
    container_id: str
    name: str
    image: str
    status: str
    socket_path: str
    ports: dict[str, int]
    docker_id: str | None
    code_revision: str | None


class ContainerChanged(Payload):
    """container_started, container_stopped, container_restarted, container_deleted."""

    container_id: str
    status: str


class ContainerUpdated(Payload):
    container_id: str
    code_path: str
    status: str
    code_revision: str
    files: int


class MessageSent(Payload):
    container_id: str
    message: dict[str, Any]
    status: str


class StatusFields(Payload):
    state: str
    health: str
    uptime: str
    socket_connected: bool
    last_communication: str | None
    resource_usage: dict[str, Any]
    name: str
    docker_id: str | None
    desired_state: str
    code_revision: str | None
    running_revision: str | None
    exit_code: int | None
    restart_count: int
    waiting_reason: str | None
    next_restart_at: str | None
    last_error: dict[str, Any] | None


class ContainerStatus(StatusFields):
    container_id: str


class ListEntry(Payload):
    id: str
    name: str
    status: str
    image: str
    created: str
    socket_path: str
    ports: dict[str, int]
    docker_id: str | None
    desired_state: str


class ContainerList(Payload):
    containers: list[ListEntry]
    count: int


class MessagesSubscribed(Payload):
    container_ids: list[str] | None


class LogLine(Payload):
    stream: Literal["stdout", "stderr"]
    text: str
    timestamp: str | None


class ContainerLogs(Payload):
    container_id: str
    lines: list[LogLine]
    truncated: bool


class LogsFollowed(Payload):
    """logs_followed and logs_unfollowed."""

    container_id: str
    following: bool


class Metrics(Payload):
    """get_metrics' answer: the manager's own figures (README, Extensions); kept as the server sends them."""


# -- server events -----------------------------------------------------------------------------------
class EngineStatus(Payload):
    available: bool
    docker_host: str
    since: str
    message: str
    timestamp: str


class Connected(Payload):
    message: str
    sid: str
    engine: EngineStatus


class StatusChanged(Payload):
    container_id: str
    old_state: str
    new_state: str
    timestamp: float  # seconds since the epoch, as the reference shows it for this event


class CrashDetails(Payload):
    error: str
    logs: str
    oom_killed: bool
    restart_in: float


class ContainerCrashed(Payload):
    container_id: str
    exit_code: int
    crash_details: CrashDetails
    timestamp: float  # seconds since the epoch, as the reference shows it for this event


class HealthWarning(Payload):
    container_id: str
    health: str
    timestamp: float  # seconds since the epoch, as the reference shows it for this event


class MessageReceived(Payload):
    container_id: str
    message: dict[str, Any]
    timestamp: str


class ActivityLog(Payload):
    activity_type: str
    container_id: str | None
    message: str
    details: dict[str, Any]
    timestamp: str


class StatusUpdate(Payload):
    container_id: str
    status: StatusFields


class ContainerLog(Payload):
    container_id: str
    lines: list[LogLine]
    dropped: int
    ended: bool
    reason: str | None = None


class ErrorPayload(Payload):
    error: Literal[True]
    error_type: str
    message: str
    details: dict[str, Any]
    timestamp: str


# request event -> the model of its answer
RESPONSES: dict[str, type[Payload]] = {
    "create_container": ContainerCreated,
    "start_container": ContainerChanged,
    "stop_container": ContainerChanged,
    "restart_container": ContainerChanged,
    "update_container": ContainerUpdated,
    "delete_container": ContainerChanged,
    "send_message": MessageSent,
    "get_container_status": ContainerStatus,
    "list_containers": ContainerList,
    "subscribe_messages": MessagesSubscribed,
    "get_container_logs": ContainerLogs,
    "follow_logs": LogsFollowed,
    "unfollow_logs": LogsFollowed,
    "get_metrics": Metrics,
}

# server event name -> its model
EVENTS: dict[str, type[Payload]] = {
    "connected": Connected,
    "status_changed": StatusChanged,
    "container_crashed": ContainerCrashed,
    "container_health_warning": HealthWarning,
    "message_received": MessageReceived,
    "activity_log": ActivityLog,
    "container_status_update": StatusUpdate,
    "engine_status": EngineStatus,
    "container_log": ContainerLog,
    "error": ErrorPayload,
}
