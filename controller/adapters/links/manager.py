"""Per-container Unix-socket links between the manager and the process inside: the one object callers use.

The manager listens; the container dials. Each container's socket lives in a
directory of its own, mounted read-only into the container (setup.py), so a
container never sees another container's link, and a manager restart that
binds a fresh socket is visible to the container at once: the runtime simply
dials again.

A misbehaving container costs only its own link (link.py: frame rate,
back-pressure, reconnection rate; wire.py: a peer that stops reading is cut
off). The rest: server.py reads, wire.py writes, liveness.py pings,
handshake.py reloads code.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from controller import tracing
from controller.adapters.links import handshake, liveness, server, setup, wire
from controller.adapters.links.link import DEFAULT_BYTE_RATE, Link
from controller.events import EventSink
from controller.health import LinkProbe
from flow_runtime.framing import DEFAULT_MAX_FRAME
from flow_runtime.protocol import LINK_DIR, LINK_ENV, LINK_PATH, is_control
from store import Record

tracer = trace.get_tracer("flow_manager.links")


class LinkManager:
    def __init__(
        self,
        socket_dir: str,
        sink: EventSink,
        *,
        host_socket_dir: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        send_timeout: float = 5.0,
        rate_limit: float = 2000.0,
        byte_rate_limit: float = DEFAULT_BYTE_RATE,
        ping_interval: float = 5.0,
        ping_timeout: float = 15.0,
        wake: Callable[[str], None] = lambda key: None,
    ) -> None:
        self.socket_dir = Path(socket_dir)
        self.host_socket_dir = Path(host_socket_dir or socket_dir)  # the same directory as Docker sees it
        self.sink = sink
        self.max_frame = max_frame
        self.send_timeout = send_timeout
        self.rate_limit = rate_limit  # messages per second one container may send; excess waits in its socket
        self.byte_rate_limit = byte_rate_limit  # and bytes per second (0: either is unlimited)
        self.wake = wake  # tells the reconciler a link came or went (code revisions and health are checked then)
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.links: dict[str, Link] = {}
        # Messages handed to containers and received from them (no control frames): plain counts, observed by
        # the metrics (controller/metrics.LINK_MESSAGES) and reported by get_metrics, so a message costs an add.
        self.messages_sent = self.messages_received = 0
        self._prober: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.ping_interval > 0:
            self._prober = asyncio.create_task(liveness.probe_forever(self), name="link-pings")

    # -- paths -------------------------------------------------------------------
    def link_dir(self, container_id: str) -> Path:
        return setup.link_dir(self.socket_dir, container_id)

    def public_path(self, name: str) -> Path:
        return Path(setup.public_socket_path(self.socket_dir, name))

    def mount(self, container_id: str) -> str:
        """Read-only: the container can connect() to its socket but write nothing on the host."""
        return f"{setup.link_dir(self.host_socket_dir, container_id)}:{LINK_DIR}:ro"

    # -- lifecycle (called by the reconciler) --------------------------------------
    async def ensure(self, record: Record) -> None:
        """Listen on this container's link if not already (idempotent, cheap)."""
        link = self.links.get(record.id)
        if link is not None and link.server is not None:
            return
        link = link or Link(record.id, record.spec.name)
        self.links[record.id] = link
        listening = await asyncio.to_thread(setup.prepare, self.socket_dir, record.id, self.public_path(record.spec.name))
        try:
            link.server = await asyncio.start_unix_server(lambda r, w: server.serve(self, link, r, w), sock=listening, limit=self.max_frame + 64)
        except BaseException:
            listening.close()
            raise

    async def discard(self, container_id: str, name: str) -> None:
        link = self.links.pop(container_id, None)
        if link is not None:
            if link.server is not None:
                link.server.close()
            if link.writer is not None:
                link.writer.close()
            handshake.abandon(link)
        await asyncio.to_thread(setup.cleanup, self.link_dir(container_id), self.public_path(name))

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
            if link.writer is not None:
                link.writer.close()

    def inputs(self, prepare_for: Record) -> tuple[tuple[str, ...], dict[str, str]]:
        """Mounts and environment a new container needs to reach its link."""
        return (self.mount(prepare_for.id),), {LINK_ENV: LINK_PATH}

    # -- state for status ------------------------------------------------------------
    def connected(self, container_id: str) -> bool:
        link = self.links.get(container_id)
        return link is not None and link.connected()

    def last_communication(self, container_id: str) -> float | None:
        link = self.links.get(container_id)
        return link.last_communication if link else None

    def probe(self, container_id: str) -> LinkProbe | None:
        link = self.links.get(container_id)
        if link is None:
            return None
        return LinkProbe(
            link.ever_connected, self.connected(container_id), link.waiting_since, link.answered_at, link.disconnected_at, link.run_started_at
        )

    def observe_run(self, container_id: str, started_at: float | None) -> None:
        """The container's current run began at `started_at`: a link dropped before it is not an outage,
        for the prober and the reconciler alike."""
        link = self.links.get(container_id)
        if link is not None:
            link.run_started_at = started_at

    def revision(self, container_id: str) -> str | None:
        link = self.links.get(container_id)
        return link.revision if link is not None and self.connected(container_id) else None

    # -- traffic -------------------------------------------------------------------
    async def send(self, container_id: str, message: dict[str, Any]) -> None:
        """Hand one frame to the container's link (wire.send: returning means the kernel has it all)."""
        with tracing.span(tracer, "link.send", {"flow.container_id": container_id}, SpanKind.PRODUCER):
            await wire.send(self.links.get(container_id), message, self.max_frame, self.send_timeout)
        if not is_control(message.get("command")):  # a reload is the manager's own frame, not a message
            self.messages_sent += 1

    async def reload(self, container_id: str, revision: str, timeout: float) -> None:
        """Ask the runtime to load new code and wait until it runs `revision`."""
        await handshake.reload(self, container_id, revision, timeout)
