"""Turning the security settings into the objects that enforce them, refusing unsafe combinations.

Everything here runs once at start-up, so a mistake in the configuration
(an unreadable token file, a default limit above its maximum, a public
address without a token) stops the manager before it listens, with a message
that says what to change, instead of leaving it running less safe than asked.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.auth import ConnectAuth, is_loopback
from api.limits import RateLimiter
from api.policy import RequestPolicy
from flow_manager.config import Settings, default_state_dir

MIN_TOKEN_CHARS = 16


class SecurityConfigError(ValueError):
    """The settings are unsafe or inconsistent; the message says which flag to change."""


@dataclass(frozen=True)
class Security:
    auth: ConnectAuth
    policy: RequestPolicy
    cors: Any  # python-engineio's cors_allowed_origins: None (same origin only), "*" or a list
    transport_ceiling: int  # largest websocket frame or polling body read at all
    warnings: tuple[str, ...] = field(default=())

    def limiter(self, settings: Settings) -> RateLimiter:
        return RateLimiter(settings.client_rate_limit, settings.client_rate_burst)


def split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def load_token(settings: Settings) -> str | None:
    if settings.token:
        return settings.token.strip() or None
    if not settings.token_file:
        return None
    try:
        token = Path(settings.token_file).read_text().strip().splitlines()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read --token-file {settings.token_file}: {exc.strerror}") from None
    if not token or not token[0].strip():
        raise SecurityConfigError(f"--token-file {settings.token_file} is empty")
    return token[0].strip()


def binds_loopback_only(host: str) -> bool:
    """Does listening on `host` reach loopback only? A name counts only if every address it has is loopback."""
    if not host:
        return False
    if is_loopback(host):
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(is_loopback(a) for a in addresses)


def port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise SecurityConfigError(f"--host-port-range {text!r} is not LOW-HIGH") from None
    if not 1 <= low <= high <= 65535:
        raise SecurityConfigError(f"--host-port-range {text!r} must lie within 1-65535, low first")
    return low, high


def cors_origins(text: str) -> Any:
    origins = split(text)
    if not origins:
        return None  # same origin only; clients that send no Origin (scripts, node) are not affected
    return "*" if "*" in origins else list(origins)


def docker_socket(docker_host: str | None) -> str | None:
    return docker_host[len("unix://") :] if docker_host and docker_host.startswith("unix://") else None


def configure(settings: Settings) -> Security:
    token = load_token(settings)
    warnings = []
    if token is None and not settings.insecure and not binds_loopback_only(settings.host):
        raise SecurityConfigError(
            f"refusing to listen on {settings.host or 'all addresses'} without a token: anyone who can reach it "
            "could run containers on this host. Set FLOW_MANAGER_TOKEN (or --token-file), or pass --insecure."
        )
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        warnings.append(
            f"the token has fewer than {MIN_TOKEN_CHARS} characters; use a long random one "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    for name, default, maximum in (
        ("memory", settings.default_memory_limit, settings.max_memory_limit),
        ("pids", settings.default_pids_limit, settings.max_pids_limit),
    ):
        if not 0 < default <= maximum:
            raise SecurityConfigError(f"--default-{name}-limit ({default}) must be positive and at most --max-{name}-limit ({maximum})")
    if settings.max_request_bytes < 4096:
        raise SecurityConfigError("--max-request-bytes must be at least 4096")
    state = settings.state_dir or default_state_dir()
    policy = RequestPolicy.build(
        volume_roots=split(settings.volume_roots),
        code_roots=split(settings.code_roots),
        forbidden=(state, settings.socket_dir, settings.socket_host_dir, docker_socket(settings.docker_host) or ""),
        image_patterns=split(settings.allowed_images) or ("*",),
        port_range=port_range(settings.host_port_range),
        reserved_ports=frozenset({settings.port}),
        max_memory=settings.max_memory_limit,
        max_pids=settings.max_pids_limit,
    )
    return Security(
        auth=ConnectAuth(token=token, loopback_hosts_only=not settings.insecure),
        policy=policy,
        cors=cors_origins(settings.cors_origins),
        transport_ceiling=max(2 * settings.max_request_bytes, 1 << 20),
        warnings=tuple(warnings),
    )
