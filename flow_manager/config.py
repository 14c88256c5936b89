"""Settings: each option is a CLI flag and an environment variable, documented in the README."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from controller.adapters.links.link import DEFAULT_BYTE_RATE
from controller.adapters.links.setup import DEFAULT_SOCKET_DIR
from controller.container_config import (
    DEFAULT_DISK_LIMIT,
    DEFAULT_LOG_MAX_FILES,
    DEFAULT_LOG_MAX_SIZE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_PIDS_LIMIT,
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    socket_dir: str = DEFAULT_SOCKET_DIR
    status_interval: float = 10.0
    docker_host: str | None = None
    state_dir: str = ""
    store: str = "journal"
    instance: str = "default"
    flow_image: str = "flow:latest"
    build_image: bool = True
    request_timeout: float = 60.0
    stop_timeout: int = 10
    workers: int = 32
    resync_period: float = 30.0
    restart_backoff_initial: float = 10.0
    restart_backoff_max: float = 300.0
    restart_backoff_reset: float = 600.0
    publish_host_ip: str = "127.0.0.1"
    socket_host_dir: str = ""
    max_frame_bytes: int = 1 << 20
    send_timeout: float = 5.0
    link_rate_limit: float = 2000.0
    link_byte_rate_limit: float = float(DEFAULT_BYTE_RATE)
    link_ping_interval: float = 5.0
    link_ping_timeout: float = 15.0
    orphan_grace: float = 60.0
    engine_retry_max: float = 5.0
    trace_exporter: str = "none"
    metrics: bool = True
    log_format: str = "text"
    loop_monitor_interval: float = 0.02
    log_level: str = "info"
    # -- security: who may connect and what they may ask for (README "Security") --
    token: str = field(default="", repr=False)
    token_file: str = ""
    insecure: bool = False
    cors_origins: str = ""
    volume_roots: str = ""
    code_roots: str = ""
    allowed_images: str = "*"
    pull_images: bool = False
    host_port_range: str = "1024-65535"
    default_memory_limit: int = DEFAULT_MEMORY_LIMIT
    max_memory_limit: int = 4 << 30
    default_pids_limit: int = DEFAULT_PIDS_LIMIT
    max_pids_limit: int = 4096
    container_log_max_size: str = DEFAULT_LOG_MAX_SIZE
    container_log_max_files: int = DEFAULT_LOG_MAX_FILES
    container_disk_limit: int = DEFAULT_DISK_LIMIT
    max_containers: int = 100
    max_request_bytes: int = 2 << 20
    client_rate_limit: float = 200.0
    client_rate_burst: int = 400
    # -- availability: what one client, address or connection may cost (README "Limitations") --
    allow_polling: bool = False
    max_connections: int = 1024
    max_connections_per_source: int = 256
    reserved_fds: int = 512
    handshake_timeout: float = 10.0
    auth_timeout: float = 10.0
    max_unauthenticated: int = 256
    max_unauthenticated_per_source: int = 32
    client_queue_bytes: int = 16 << 20
    source_rate_limit: float = 1000.0
    source_rate_burst: int = 2000
    max_requests_in_flight: int = 512
    max_requests_in_flight_per_connection: int = 32


HELP = {
    "host": "address to listen on",
    "port": "port to listen on",
    "socket_dir": "directory of the per-container Unix-socket links",
    "status_interval": "seconds between container_status_update rounds",
    "docker_host": "Docker engine URL (default: DOCKER_HOST, else the local socket)",
    "state_dir": "directory of the durable journal and code snapshots (default: $XDG_STATE_HOME/flow-manager)",
    "store": "'journal' (durable, the default) or 'memory' (intent is lost when the manager stops)",
    "instance": "name of this manager; it manages only containers labelled with it",
    "flow_image": "tag of the reference flow image built when missing",
    "build_image": "build the flow image at start when it is missing or out of date",
    "request_timeout": "seconds a request waits for Docker to converge before answering system_error",
    "stop_timeout": "seconds Docker waits after SIGTERM before SIGKILL on stop",
    "workers": "concurrent reconcile workers (one key per worker at a time)",
    "resync_period": "seconds between full resyncs with Docker",
    "restart_backoff_initial": "crash-loop back-off after the second crash, doubling",
    "restart_backoff_max": "upper bound of the crash-loop back-off",
    "restart_backoff_reset": "seconds of clean running after which the back-off is forgotten",
    "publish_host_ip": "host address that published ports bind to",
    "socket_host_dir": "the socket directory as the Docker engine sees it, when it differs (sidecars)",
    "max_frame_bytes": "largest link frame accepted or sent; a larger one resets the link",
    "send_timeout": "seconds send_message waits for the container to take a message",
    "link_rate_limit": "messages per second one container may send; more wait in its socket (none are dropped); 0 disables",
    "link_byte_rate_limit": "bytes per second one container may send (also its burst: the link's byte budget); 0 disables",
    "link_ping_interval": "seconds between liveness pings on every connected link (0 turns them off)",
    "link_ping_timeout": "seconds without a pong (or without the link) before a running container is unhealthy",
    "orphan_grace": "seconds a container labelled for this instance but without a record is kept before removal",
    "engine_retry_max": "upper bound of the back-off between pings of an unreachable Docker engine",
    "metrics": "serve OpenTelemetry metrics for Prometheus at GET /metrics (no token; counts only, no container names or ids)",
    "trace_exporter": "OpenTelemetry spans (docs/tracing.md): none, console, otlp (HTTP) or otlp-grpc; OTLP reads OTEL_EXPORTER_OTLP_*",
    "log_format": "text, or json (one object a line with event, container id, trace and span ids)",
    "loop_monitor_interval": "seconds between event-loop lag probes (get_metrics; stalls over 250 ms are logged); 0 disables",
    "log_level": "debug, info, warning or error",
    "token": "shared token clients must send as auth={'token': ...} (prefer the env variable or --token-file)",
    "token_file": "file holding the token (first line)",
    "insecure": "allow listening on a non-loopback address without a token",
    "cors_origins": "comma-separated origins allowed cross-origin access, or '*' (default: same origin only)",
    "volume_roots": "comma-separated host directories under which `volumes` may bind (default: none)",
    "code_roots": "comma-separated directories under which `code_path` may be read (default: none)",
    "allowed_images": "comma-separated image patterns (fnmatch, e.g. 'flow:*,myorg/*')",
    "pull_images": "pull an image that is not present locally (off: only local images run)",
    "host_port_range": "host ports `ports` may publish, LOW-HIGH",
    "default_memory_limit": "memory limit in bytes of a container whose request sets none",
    "max_memory_limit": "largest memory_limit a request may ask for, in bytes",
    "default_pids_limit": "pids limit of a container whose request sets none",
    "max_pids_limit": "largest pids_limit a request may ask for",
    "container_log_max_size": "Docker's json-file log of a container rotates at this size (e.g. 10m); '' leaves logging to the daemon",
    "container_log_max_files": "rotated log files kept per container",
    "container_disk_limit": "bytes a container's writable layer may hold, where the storage driver can bound it (0: none)",
    "max_containers": "containers this manager manages at most; create_container beyond answers system_error",
    "max_request_bytes": "largest Socket.IO request; a larger one answers validation_error",
    "client_rate_limit": "requests per second one client may send (sustained); 0 disables",
    "client_rate_burst": "requests one client may send in a burst above the sustained rate",
    "allow_polling": "accept Engine.IO long-polling too (browsers without websockets); off: websocket only",
    "max_connections": "TCP connections held at most; more are closed when accepted",
    "max_connections_per_source": "TCP connections held at most from one address",
    "reserved_fds": "file descriptors kept free of client connections for the journal, links and Docker",
    "handshake_timeout": "seconds a new connection has to send its request headers before it is closed",
    "auth_timeout": "seconds a session has to complete the Socket.IO connect with a valid token",
    "max_unauthenticated": "sessions waiting to authenticate at most; more are refused",
    "max_unauthenticated_per_source": "sessions waiting to authenticate at most from one address",
    "client_queue_bytes": "bytes queued for one client at most; a client that falls further behind is disconnected",
    "source_rate_limit": "requests per second all connections from one address may send; 0 disables",
    "source_rate_burst": "requests one address may send in a burst above its sustained rate",
    "max_requests_in_flight": "requests being answered at once, all clients together; more answer system_error",
    "max_requests_in_flight_per_connection": "requests being answered at once for one connection; more answer system_error",
}


def env_name(field: str) -> str:
    return "FLOW_MANAGER_" + field.upper()


def _parse_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = os.environ.get(env_name(f.name))
        if f.name == "docker_host" and default is None:
            default = os.environ.get("DOCKER_HOST")
        if f.type == "bool" or f.type is bool:
            value = _parse_bool(default) if default is not None else f.default
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=f"{HELP[f.name]} (env {env_name(f.name)})")
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        parser.add_argument(
            flag,
            type=kind,
            default=kind(default) if default is not None else f.default,
            help=f"{HELP[f.name]} (env {env_name(f.name)}; default {f.default})",
        )


def from_namespace(namespace: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(namespace, f.name) for f in fields(Settings)})


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "flow-manager")
