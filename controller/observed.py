"""What Docker reports about one managed container, reduced to what planning needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller import labels

# Docker's State.Status -> the state word clients see ("exited" reads as "stopped",
# as in the API reference).
API_STATES = {
    "created": "created",
    "running": "running",
    "paused": "paused",
    "restarting": "restarting",
    "removing": "removing",
    "exited": "stopped",
    "dead": "dead",
}
ABSENT = "deleted"


def parse_docker_time(value: str | None) -> float | None:
    """Docker timestamps carry nanoseconds and use year 1 for 'never'."""
    if not value or value.startswith("0001-01-01"):
        return None
    value = value.rstrip("Z")
    if "." in value:
        head, frac = value.split(".", 1)
        digits = "".join(ch for ch in frac if ch.isdigit())[:6]
        offset = frac[len("".join(ch for ch in frac if ch.isdigit())) :]
        value = f"{head}.{digits}{offset}"
    parsed = datetime.fromisoformat(value if ("+" in value[10:] or value.count("-") > 2) else value + "+00:00")
    return parsed.timestamp()


@dataclass(frozen=True)
class Observed:
    docker_id: str
    name: str
    managed_id: str
    spec_hash: str | None
    status: str
    running: bool
    paused: bool
    exit_code: int
    oom_killed: bool
    error: str
    pid: int
    started_at: float | None
    finished_at: float | None
    created_at: float | None
    health: str | None
    image: str

    @property
    def api_state(self) -> str:
        return API_STATES.get(self.status, self.status)

    @property
    def run_key(self) -> tuple[str, float | None]:
        """Identifies one run of one container: crash reports are once per run."""
        return (self.docker_id, self.started_at)

    @classmethod
    def from_inspect(cls, info: dict[str, Any]) -> "Observed":
        state = info.get("State") or {}
        config = info.get("Config") or {}
        container_labels = config.get("Labels") or {}
        health = (state.get("Health") or {}).get("Status")
        return cls(
            docker_id=info["Id"],
            name=(info.get("Name") or "").lstrip("/"),
            managed_id=container_labels.get(labels.CONTAINER_ID, ""),
            spec_hash=container_labels.get(labels.SPEC_HASH),
            status=state.get("Status", "unknown"),
            running=bool(state.get("Running")) and not state.get("Paused"),
            paused=bool(state.get("Paused")),
            exit_code=int(state.get("ExitCode") or 0),
            oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or "",
            pid=int(state.get("Pid") or 0),
            started_at=parse_docker_time(state.get("StartedAt")),
            finished_at=parse_docker_time(state.get("FinishedAt")),
            created_at=parse_docker_time(info.get("Created")),
            health=health,
            image=config.get("Image", ""),
        )


def health_from_status_text(text: str) -> str | None:
    """The HEALTHCHECK verdict inside a container list entry's Status ("Up 2 minutes (healthy)")."""
    if "(health: starting)" in text:
        return "starting"
    if "(unhealthy)" in text:
        return "unhealthy"
    if "(healthy)" in text:
        return "healthy"
    return None


@dataclass(frozen=True)
class Listed:
    """One entry of Docker's container list: enough to tell whether what we inspected last still holds."""

    docker_id: str
    managed_id: str
    status: str
    health: str | None

    @property
    def api_state(self) -> str:
        return API_STATES.get(self.status, self.status)

    @classmethod
    def from_list(cls, entry: dict[str, Any]) -> "Listed":
        return cls(
            docker_id=entry.get("Id", ""),
            managed_id=(entry.get("Labels") or {}).get(labels.CONTAINER_ID, ""),
            status=entry.get("State", "unknown"),
            health=health_from_status_text(entry.get("Status") or ""),
        )

    def matches(self, observed: Observed) -> bool:
        return self.docker_id == observed.docker_id and self.status == observed.status and self.health == observed.health
