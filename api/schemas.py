"""Request validation: every field of every request, before any intent is written.

Strict types (a port is an int, not "8080"), Docker's own name rules, and no
unknown fields: a typo such as "enviroment" is an error, not silently ignored.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from controller.tracing import TRACEPARENT_RE
from controller.tracing import parse as parse_traceparent
from flow_runtime.protocol import CONTROL_PREFIX

NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$"  # Docker's container name rule (2+ characters)
MANAGED_ID_RE = re.compile(r"^[0-9a-f]{12}$")  # the shape of the manager's container ids
# Docker's image reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)"
IMAGE_RE = (
    rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
PORT_KEY_RE = re.compile(r"^(\d{1,5})(/(tcp|udp|sctp))?$")
MAX_MESSAGE_BYTES = 1 << 20
MAX_MESSAGE_DEPTH = 32
RESERVED_COMMAND_PREFIX = CONTROL_PREFIX  # the manager's control commands to the runtime (reload, ping)

Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
Image = Annotated[str, StringConstraints(max_length=255, pattern=IMAGE_RE)]
Reference = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]  # an id or a name
AbsolutePath = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/[^\x00]*$")]
HostPort = Annotated[int, Field(ge=1, le=65535)]


def _real_span(value: str) -> str:
    if parse_traceparent(value) is None:
        raise ValueError("a traceparent's trace id and span id may not be all zeros")
    return value


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Extension: the client's W3C trace context; the request's span continues it (api/tracing.py).
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_RE), AfterValidator(_real_span)] | None = None


class CreateContainer(Request):
    image: Image
    name: Name | None = None
    environment: dict[str, Annotated[str, StringConstraints(max_length=65536)]] = Field(default_factory=dict, max_length=256)
    volumes: dict[AbsolutePath, AbsolutePath] = Field(default_factory=dict, max_length=64)
    ports: dict[str, HostPort] = Field(default_factory=dict, max_length=64)
    command: list[Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00]*$")]] | None = Field(default=None, max_length=256)
    code_path: AbsolutePath | None = None
    memory_limit: Annotated[int, Field(ge=6 << 20, le=1 << 40)] | None = None  # bytes; Docker's minimum is 6 MiB
    pids_limit: Annotated[int, Field(ge=1, le=1 << 22)] | None = None

    @field_validator("name")
    @classmethod
    def _not_an_id(cls, value: str | None) -> str | None:
        """References accept an id or a name, ids first: a name shaped like an id could shadow another
        container (or be shadowed by one created later), so such names are refused."""
        if value is not None and MANAGED_ID_RE.match(value):
            raise ValueError("a name may not look like a container id (12 lowercase hexadecimal characters)")
        return value

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if "\0" in item:
                raise ValueError(f"value of {key} contains a NUL byte")
        return value

    @field_validator("ports")
    @classmethod
    def _port_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            match = PORT_KEY_RE.match(key)
            if not match or not 1 <= int(match.group(1)) <= 65535:
                raise ValueError(f"{key!r} is not a container port (1-65535, optionally /tcp or /udp)")
        if len(set(value.values())) != len(value):
            raise ValueError("two container ports cannot share one host port")
        return value

    @field_validator("volumes")
    @classmethod
    def _no_dotdot(cls, value: dict[str, str]) -> dict[str, str]:
        for host, inside in value.items():
            for path in (host, inside):
                if ".." in path.split("/") or "\0" in path or ":" in path:
                    raise ValueError(f"{path!r} must be a plain absolute path (no '..', ':' or NUL)")
        return value


class ContainerRef(Request):
    container_id: Reference


class UpdateContainer(ContainerRef):
    code_path: AbsolutePath


class SendMessage(ContainerRef):
    message: dict[str, Any]

    @field_validator("message")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value) > MAX_MESSAGE_DEPTH:
            raise ValueError(f"message nests deeper than {MAX_MESSAGE_DEPTH} levels")
        try:  # what the link will carry: plain JSON (no NaN, no bytes), measured as sent
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
        except (TypeError, ValueError):
            raise ValueError("message must be plain JSON (no binary data, NaN or Infinity)") from None
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
        command = value.get("command")
        if isinstance(command, str) and command.startswith(RESERVED_COMMAND_PREFIX):
            raise ValueError(f"commands starting with {RESERVED_COMMAND_PREFIX!r} are reserved for the manager")
        return value


class ListContainers(Request):
    pass


MAX_SUBSCRIPTIONS = 1000


class SubscribeMessages(Request):
    """Extension: which containers' `message_received` this client wants; None (the default) is all."""

    container_ids: Annotated[list[Reference], Field(max_length=MAX_SUBSCRIPTIONS)] | None = None


class GetMetrics(Request):
    """Extension: the manager's own figures; `reset` starts new lag, GC and handler-time windows."""

    reset: bool = False


MAX_LOG_TAIL = 5000  # lines of one container_logs answer (its bytes are bounded too: api/container_logs.py)
MAX_FOLLOW_TAIL = 1000


class GetContainerLogs(ContainerRef):
    """Extension: the last `tail` lines a container printed, from `since` (seconds since the epoch, or ISO 8601)."""

    tail: Annotated[int, Field(ge=0, le=MAX_LOG_TAIL)] = 100
    since: Annotated[float, Field(ge=0)] | Annotated[str, StringConstraints(max_length=64)] | None = None
    timestamps: bool = True
    stdout: bool = True
    stderr: bool = True

    @field_validator("since")
    @classmethod
    def _moment(cls, value: float | str | None) -> float | None:
        if not isinstance(value, str):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("since must be seconds since the epoch or an ISO 8601 moment") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()

    @model_validator(mode="after")
    def _a_stream(self) -> "GetContainerLogs":
        if not (self.stdout or self.stderr):
            raise ValueError("at least one of stdout and stderr must be true")
        return self

    @property
    def since_seconds(self) -> float | None:
        return float(self.since) if self.since is not None else None


class FollowLogs(ContainerRef):
    """Extension: this connection receives the container's new lines as `container_log` events, starting
    with its last `tail` lines."""

    tail: Annotated[int, Field(ge=0, le=MAX_FOLLOW_TAIL)] = 0


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_MESSAGE_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level
