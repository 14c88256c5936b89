"""The server's payloads fit api/responses.py's models exactly, so the Python client cannot drift from the server."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from api import payloads, responses
from api.errors import ApiError
from api.log_follower import log_line
from controller.adapters.docker.logs import LogLine
from controller.engine import EngineStatus
from controller.events import Activity, ContainerCrashed, ControllerError, HealthWarning, MessageReceived, StatusChanged
from controller.status import ContainerStatus


def exact(model: type[BaseModel], payload: dict[str, Any]) -> None:
    """Every field of the payload is one of the model's, and every required field of the model is there."""
    parsed = model.model_validate(payload)
    assert not parsed.model_extra, f"{model.__name__}: fields the model does not know: {parsed.model_extra}"
    for name, value in parsed:
        if isinstance(value, BaseModel):
            exact(type(value), payload[name])


STATUS = ContainerStatus(
    container_id="0123456789ab",
    name="demo",
    image="flow:latest",
    desired="running",
    docker_id="f" * 64,
    state="running",
    health="healthy",
    socket_connected=True,
    uptime="0:00:05",
    last_communication=time.time(),
    resource_usage={"cpu_percent": 0.0},
    code_revision=None,
    running_revision=None,
    exit_code=None,
    crash_count=0,
    waiting_reason=None,
    next_restart_at=None,
    created_at=time.time(),
)


def test_status_payloads() -> None:
    exact(responses.ContainerStatus, payloads.container_status(STATUS))
    exact(responses.StatusUpdate, payloads.status_update(STATUS))


def test_every_controller_event() -> None:
    now = time.time()
    cases: list[object] = [
        StatusChanged("c", "stopped", "running", now),
        ContainerCrashed("c", 3, "exit 3", "boom", False, 0.5, now),
        HealthWarning("c", "unhealthy", now),
        MessageReceived("c", {"a": 1}, now),
        Activity("container_started", "c", "started", {"reason": "x"}),
        EngineStatus(available=True, docker_host="local socket", since=now, message="ok"),
        ControllerError("docker_api_error", "no", {"operation": "x"}),
    ]
    for event in cases:
        name, payload = payloads.event(event)
        exact(responses.EVENTS[name], payload)


def test_errors_and_log_lines() -> None:
    exact(responses.ErrorPayload, ApiError("validation_error", "bad", field="x").payload("create_container"))
    line = log_line(LogLine("stdout", "hi", 1_700_000_000 * 10**9))
    exact(responses.ContainerLogs, {"container_id": "c", "lines": [line], "truncated": False})
    exact(responses.ContainerLog, {"container_id": "c", "lines": [line], "dropped": 0, "ended": False})
