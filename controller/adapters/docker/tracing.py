"""Docker API calls in traces: the operation a call is for, named on the HTTP span aiohttp's instrumentation makes.

aiodocker talks to Docker through aiohttp; opentelemetry-instrumentation-aiohttp-client (installed by
flow_manager/telemetry.py only when tracing is on) makes one client span per HTTP request, a child of the
current span (the reconcile). Its name would be the bare HTTP method: `request_hook` names it after the
adapter's operation (`docker start_container`), which `operation()` holds for the call's task.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator

import aiohttp
from opentelemetry.trace import Span

_operation: ContextVar[str | None] = ContextVar("docker_operation", default=None)


@contextlib.contextmanager
def operation(name: str) -> Iterator[None]:
    """The Docker operation the HTTP requests made inside this block are for."""
    token = _operation.set(name)
    try:
        yield
    finally:
        _operation.reset(token)


def request_hook(span: Span, params: aiohttp.TraceRequestStartParams) -> None:
    """Names the HTTP span after the adapter's operation (low cardinality: no ids in span names)."""
    if not span.is_recording():
        return
    name = _operation.get()
    span.update_name(f"docker {name}" if name else f"docker {params.method}")
    span.set_attributes({"docker.operation": name or params.method, "peer.service": "docker"})
