"""What the controller tells the outside world, as typed values.

The controller never formats Socket.IO payloads; it publishes these to a sink
(api.broadcast) which does. That keeps the data flow one-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class StatusChanged:
    container_id: str
    old_state: str
    new_state: str
    timestamp: float


@dataclass(frozen=True)
class ContainerCrashed:
    container_id: str
    exit_code: int
    error: str
    logs: str
    oom_killed: bool
    restart_in: float
    timestamp: float


@dataclass(frozen=True)
class HealthWarning:
    container_id: str
    health: str
    timestamp: float


@dataclass(frozen=True)
class MessageReceived:
    container_id: str
    message: dict[str, Any]
    timestamp: float


@dataclass(frozen=True)
class Activity:
    activity_type: str
    container_id: str | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControllerError:
    """A failure no request is waiting for: broadcast so it is never silent."""

    error_type: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Event = StatusChanged | ContainerCrashed | HealthWarning | MessageReceived | Activity | ControllerError


class EventSink(Protocol):
    def publish(self, event: object, on_sent: Callable[[], None] | None = None) -> bool:
        """Queue for delivery; False if nobody listens. `on_sent` runs after delivery."""
        ...
