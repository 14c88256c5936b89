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
    CREATED = "created"  # the container exists but nobody asked it to run
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"  # tombstone until the container is gone


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


RunKey = tuple[str, float | None]  # one run of one Docker container: (docker id, Docker's StartedAt)
ENDED_RUNS_KEPT = 8  # a record's containers' runs the controller remembers having judged


@dataclass(frozen=True)
class RestartTarget:
    """The run a client's restart request must end, as Docker identifies it.

    The controller binds the newest request (`request`, a Record.restart_requests
    value) to the run Docker has when it first takes the request up; the restart
    is done once Docker's current run is another one. Docker's facts only: no
    manager clock is compared with Docker's (a remote engine's clock may differ).
    `docker_id` is None when no container existed then: whatever runs later is new.
    """

    request: int
    docker_id: str | None
    started_at: float | None

    @property
    def run_key(self) -> RunKey | None:
        return (self.docker_id, self.started_at) if self.docker_id is not None else None


@dataclass(frozen=True)
class Record:
    id: str
    spec: ContainerSpec
    desired: DesiredState
    generation: int
    created_at: float
    # Code is deployed in place (no recreation), so it lives beside the spec, not in its hash.
    code_revision: str | None = None
    code_path: str | None = None
    # How many restarts clients asked for (intent: each one bumps the generation).
    restart_requests: int = 0
    # The controller's own facts that must survive a manager restart, journaled with the intent but not
    # intent themselves (written by MemoryStore.note, no new generation):
    # - which run the newest restart request ends;
    restart_target: RestartTarget | None = None
    # - the runs it judged after they ended, newest last: ended by the manager itself (stop, restart), ended
    #   while the record did not want them running, or already reported as a crash. None of them is ever
    #   (again) a crash, whatever happened to the manager in between.
    ended_runs: tuple[RunKey, ...] = ()
    # The W3C `traceparent` of the request that asked for this generation (None: tracing off, or the change
    # came from no traced request). Reconcile spans converging the generation link to it (controller/tracing.py).
    trace_context: str | None = None
    status: RecordStatus = RecordStatus()

    @property
    def converged(self) -> bool:
        return self.status.observed_generation >= self.generation


def new_container_id() -> str:
    """12 lowercase hex characters, like a short Docker id, stable for the record's life."""
    return secrets.token_hex(6)
