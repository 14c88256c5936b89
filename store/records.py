"""Desired-state records: what a client declared, never what Docker reports.

Records are immutable; every change of intent produces a new record with a
higher generation, like a Kubernetes object's metadata.generation. The
controller writes back only the ``status`` part (which generation it has
converged, or the error it hit), the way a status subresource works.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class DesiredState(str, Enum):
    CREATED = "created"   # the container exists but nobody asked it to run
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"   # tombstone until the container is gone


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that decides what the Docker container looks like.

    Its hash goes on the container as a label: a container whose label differs
    from the current spec's hash is out of date and gets recreated.
    """

    image: str
    name: str
    environment: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    memory_limit: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True)
class ConvergeError:
    """Why the controller could not converge a generation, in API terms."""

    error_type: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    permanent: bool = False


@dataclass(frozen=True)
class RecordStatus:
    observed_generation: int = 0
    error: ConvergeError | None = None
    error_generation: int = 0


@dataclass(frozen=True)
class Record:
    id: str
    spec: ContainerSpec
    desired: DesiredState
    generation: int
    created_at: float
    # Wall-clock time of the last restart request: a run that started before it
    # must be restarted. Comparing times keeps restart level-triggered.
    restart_requested_at: float | None = None
    # Code is deployed in place (no recreation), so it lives beside the spec, not in its hash.
    code_revision: str | None = None
    code_path: str | None = None
    status: RecordStatus = RecordStatus()

    @property
    def converged(self) -> bool:
        return self.status.observed_generation >= self.generation


def new_container_id() -> str:
    """12 lowercase hex characters, like a short Docker id, stable for the record's life."""
    return secrets.token_hex(6)
