"""Socket.IO payloads in exactly the API reference's shapes.

Extension fields (docker_id, code_revision, waiting_reason, ...) are added
beside the reference's fields, never instead of them.
"""

from __future__ import annotations

from typing import Any

from controller.adapters.links.setup import public_socket_path as socket_path  # noqa: F401  (handlers' socket_path)
from controller.clock import iso, iso_now
from controller.engine import EngineStatus
from controller.events import (
    Activity,
    ContainerCrashed,
    ControllerError,
    HealthWarning,
    MessageReceived,
    StatusChanged,
)
from controller.status import ContainerStatus


def _status_fields(status: ContainerStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "health": status.health,
        "uptime": status.uptime,
        "socket_connected": status.socket_connected,
        "last_communication": iso(status.last_communication) if status.last_communication else None,
        "resource_usage": status.resource_usage,
        **_extensions(status),
    }


def container_status(status: ContainerStatus) -> dict[str, Any]:
    """The `container_status` response."""
    return {"container_id": status.container_id, **_status_fields(status)}


def status_update(status: ContainerStatus) -> dict[str, Any]:
    """One `container_status_update` of the periodic round: the same fields, nested under `status`."""
    return {"container_id": status.container_id, "status": _status_fields(status)}


def _extensions(status: ContainerStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "docker_id": status.docker_id,
        "desired_state": status.desired,
        "code_revision": status.code_revision,
        "running_revision": status.running_revision,
        "exit_code": status.exit_code,
        "restart_count": status.crash_count,
        "waiting_reason": status.waiting_reason,
        "next_restart_at": iso(status.next_restart_at) if status.next_restart_at else None,
        "last_error": status.last_error,
    }


def engine_status(status: EngineStatus) -> dict[str, Any]:
    """`since` (when the engine became unreachable, or answered again) is ISO 8601 like `timestamp`."""
    return {
        "available": status.available,
        "docker_host": status.docker_host,
        "since": iso(status.since),
        "message": status.message,
        "timestamp": iso_now(),
    }


def event(event: object) -> tuple[str, dict[str, Any]]:
    """A controller event as (Socket.IO event name, payload)."""
    if isinstance(event, StatusChanged):
        return "status_changed", {
            "container_id": event.container_id,
            "old_state": event.old_state,
            "new_state": event.new_state,
            "timestamp": event.timestamp,
        }
    if isinstance(event, ContainerCrashed):
        return "container_crashed", {
            "container_id": event.container_id,
            "exit_code": event.exit_code,
            "crash_details": {"error": event.error, "logs": event.logs, "oom_killed": event.oom_killed, "restart_in": event.restart_in},
            "timestamp": event.timestamp,
        }
    if isinstance(event, HealthWarning):
        return "container_health_warning", {"container_id": event.container_id, "health": event.health, "timestamp": event.timestamp}
    if isinstance(event, MessageReceived):
        return "message_received", {"container_id": event.container_id, "message": event.message, "timestamp": iso(event.timestamp)}
    if isinstance(event, Activity):
        return "activity_log", {
            "activity_type": event.activity_type,
            "container_id": event.container_id,
            "message": event.message,
            "details": event.details,
            "timestamp": iso_now(),
        }
    if isinstance(event, EngineStatus):
        return "engine_status", engine_status(event)
    if isinstance(event, ControllerError):
        return "error", {"error": True, "error_type": event.error_type, "message": event.message, "details": event.details, "timestamp": iso_now()}
    raise TypeError(f"no payload for {type(event).__name__}")
