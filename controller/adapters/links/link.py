"""One container's link: its state, and the limits that keep its misbehaviour on its own link.

Frames are rate-limited in messages and in bytes (two token buckets, each
holding one second's worth: the link's byte budget). A frame is charged once
it is read (its size is known then), in debt if it is larger than what is
left, and the link is not read again until both debts are repaid; the wait is
re-checked after every timer, so a timer that fires early (uvloop rounds to
whole milliseconds, below one to zero) only waits again. A link also stops
being read while too many of its messages (by count or bytes) wait for
clients; reconnections are rate-limited too (reserving: each connection
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
DEFAULT_BYTE_RATE = 4 << 20  # bytes per second one container may send (--link-byte-rate-limit)
MIN_WAIT = 0.002  # shortest pause between frames of a link over its rate: shorter timers fire at once on uvloop


class LinkFailure(Exception):
    def __init__(self, error_type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_type, self.message, self.details = error_type, message, details


def _connect_bucket() -> TokenBucket:
    return TokenBucket(CONNECT_RATE, CONNECT_BURST, updated=time.monotonic())


def _unset_bucket() -> TokenBucket:
    """The rate is the manager's, set at each charge; the first charge finds the bucket full."""
    return TokenBucket(0.0, 0.0, updated=0.0)


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
    frames: TokenBucket = field(default_factory=_unset_bucket)  # messages a second the container sends
    frame_bytes: TokenBucket = field(default_factory=_unset_bucket)  # and bytes a second
    ever_connected: bool = False
    ping_seq: int = 0
    waiting_since: float | None = None  # oldest unanswered flow.ping
    answered_at: float | None = None
    disconnected_at: float | None = None
    run_started_at: float | None = None  # the container's current run, as the reconciler last observed it
    reported_health: str | None = None  # the link-only verdict the reconciler was last woken for
    connections: int = 0
    connects: TokenBucket = field(default_factory=_connect_bucket)

    def charge(self, size: int, rate: float, byte_rate: float) -> None:
        """A frame of `size` bytes was read: spend one message and its bytes (0 rates are unlimited)."""
        now = time.monotonic()
        for bucket, limit, cost in ((self.frames, rate, 1.0), (self.frame_bytes, byte_rate, float(size))):
            if limit <= 0:
                continue
            if bucket.rate != limit:  # first charge (full bucket) or a new limit: burst = one second's worth
                bucket.refill(now)
                bucket.tokens = min(limit, bucket.tokens) if bucket.rate else limit
                bucket.rate = bucket.burst = limit
            bucket.reserve(now, cost)

    def due(self) -> float:
        """Seconds until both debts are repaid: the link's next frame is not read before."""
        now = time.monotonic()
        return max((b.due(now) for b in (self.frames, self.frame_bytes) if b.rate > 0), default=0.0)

    async def paced(self) -> None:
        """Wait until the link may read again, asking again after every timer (which may fire early)."""
        while (delay := self.due()) > 0:
            await asyncio.sleep(max(delay, MIN_WAIT))

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
