"""One container's link: its state, and the limits that keep its misbehaviour on its own link.

Frames are rate-limited (a token bucket holding one second's worth), and a
link stops being read while too many of its messages (by count or bytes) wait
for clients; reconnections are rate-limited too (reserving: each connection
waits its turn), so a reset loop cannot flood clients with events.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from controller.ratelimit import TokenBucket

IN_FLIGHT_LIMIT = 256  # messages of one link queued for clients; past it that link (only) stops being read
IN_FLIGHT_BYTES = 4 << 20  # the same in bytes: a flood of large frames queues little ahead of other links' messages
# A runtime dials once per start. A container that reconnects in a loop (each bad frame resets its link)
# would otherwise turn every reconnection into events for all clients and a reconcile of itself.
CONNECT_RATE, CONNECT_BURST = 2.0, 10  # connections per second one link accepts, and bursts of
MAX_CONNECTIONS = 4  # connections of one link open at once (waiting their turn or served); more are closed


class LinkFailure(Exception):
    def __init__(self, error_type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_type, self.message, self.details = error_type, message, details


def _connect_bucket() -> TokenBucket:
    return TokenBucket(CONNECT_RATE, CONNECT_BURST, updated=time.monotonic())


@dataclass
class Link:
    container_id: str
    name: str
    server: asyncio.AbstractServer | None = None
    writer: asyncio.StreamWriter | None = None
    written: int = 0  # bytes handed to `writer` (its transport's buffer or the kernel) since it connected
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    revision: str | None = None
    last_communication: float | None = None
    reload_waiters: list[tuple[str, asyncio.Future[str | None]]] = field(default_factory=list)
    in_flight: int = 0
    in_flight_bytes: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    # Frames: the rate is the manager's, given at each call; the first call finds the bucket full.
    frames: TokenBucket = field(default_factory=lambda: TokenBucket(0.0, 0.0, tokens=0.0, updated=0.0))
    ever_connected: bool = False
    ping_seq: int = 0
    waiting_since: float | None = None  # oldest unanswered flow.ping
    answered_at: float | None = None
    disconnected_at: float | None = None
    run_started_at: float | None = None  # the container's current run, as the reconciler last observed it
    reported_health: str | None = None  # the link-only verdict the reconciler was last woken for
    connections: int = 0
    connects: TokenBucket = field(default_factory=_connect_bucket)

    def wait_for_token(self, rate: float) -> float:
        """Token bucket (burst = one second's worth): seconds to wait before the next frame."""
        self.frames.rate = self.frames.burst = rate
        return self.frames.take(time.monotonic())

    def wait_for_connect_slot(self) -> float:
        """Token bucket for new connections, reserving: seconds this connection waits before it is served."""
        return self.connects.reserve(time.monotonic())

    def busy(self) -> bool:
        return self.in_flight >= IN_FLIGHT_LIMIT or self.in_flight_bytes >= IN_FLIGHT_BYTES

    def queued(self, size: int) -> None:
        """A message of `size` bytes now waits for clients."""
        self.in_flight += 1
        self.in_flight_bytes += size

    def delivered(self, size: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= size
        if self.in_flight < IN_FLIGHT_LIMIT // 2 and self.in_flight_bytes < IN_FLIGHT_BYTES // 2:
            self.drained.set()

    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()
