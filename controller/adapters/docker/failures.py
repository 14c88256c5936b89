"""Docker's errors in the API's terms: which are worth retrying, and what the client is told.

Transient failures (daemon unreachable, 5xx) are retried by the adapter; permanent ones (no such image, bad
spec, name conflict) fail at once so they never become a retry storm.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiodocker
import aiohttp


def describe_host(docker_host: str | None) -> str:
    """The engine as logs and `engine_status` name it: its URL, or the local socket when none was given."""
    return docker_host or "local socket"


class DockerFailure(Exception):
    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        operation: str,
        status: int | None = None,
        permanent: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type, self.message, self.operation = error_type, message, operation
        self.status, self.permanent = status, permanent
        self.details = {"operation": operation, **({"docker_status": status} if status else {}), **(details or {})}


_VOLATILE_ID = re.compile(r"\b[0-9a-f]{12,64}\b")  # endpoint, network, container and exec ids in Docker's messages


def failure_cause(error_type: str, message: str) -> tuple[str, str]:
    """What a failure is about, for telling a repeat from a new failure: Docker's messages carry ids
    that change with every attempt (a new endpoint for each start that fails to bind a port), so a
    raw comparison would report every retry as news."""
    return error_type, _VOLATILE_ID.sub("<id>", message)


def _docker_message(exc: aiodocker.DockerError) -> str:
    message = exc.message
    return message.get("message", str(message)) if isinstance(message, dict) else str(message)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DockerFailure):
        return not exc.permanent
    if isinstance(exc, aiodocker.DockerError):
        return exc.status >= 500 and "No such image" not in _docker_message(exc)
    return isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError))


def classify(exc: BaseException, operation: str) -> DockerFailure:
    if isinstance(exc, DockerFailure):
        return exc
    if isinstance(exc, aiodocker.DockerError):
        text = _docker_message(exc)
        if exc.status == 404 and ("No such image" in text or "pull access denied" in text):
            return DockerFailure("image_not_found", text, operation=operation, status=404, permanent=True)
        if exc.status == 404:
            return DockerFailure("container_not_found", text, operation=operation, status=404, permanent=True)
        return DockerFailure("docker_api_error", text, operation=operation, status=exc.status, permanent=exc.status < 500)
    if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        return DockerFailure("docker_api_error", f"Docker engine unreachable: {exc!r}", operation=operation, details={"reason": "docker_unreachable"})
    return DockerFailure("system_error", f"{type(exc).__name__}: {exc}", operation=operation, permanent=True)
