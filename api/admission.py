"""Sessions that have not authenticated: few, per address and in all, and closed after a short deadline.

Opening an Engine.IO session costs nothing to a client and a task, a queue
and a ping timer to the manager; without a token check until the Socket.IO
connect, a client could open sessions faster than they time out (265,000 in
74 s, 3 GB). Here python-engineio's connect handler is wrapped: a new session
is refused (HTTP 401, or a closed websocket) when `max_unauthenticated`
sessions are already waiting to authenticate, or `max_per_source` from the
same address; a session that has not completed a Socket.IO connect with a
valid token within `timeout` seconds is closed. The API's connect handler
calls `authenticated()` once the token is checked; from then on the session
no longer counts here.

The source address of every session is kept (`source()`) so request limits
can be applied per address (api.handlers).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Awaitable, Callable

from engineio import AsyncServer

from api.client_queue import end_session

log = logging.getLogger("flow_manager.api")
SWEEP_EVERY = 0.25  # seconds between looks for sessions past their deadline


def source_of(environ: dict[str, object]) -> str:
    """The peer address of a request (ASGI scope's client); "?" when the server did not say."""
    scope = environ.get("asgi.scope")
    client = scope.get("client") if isinstance(scope, dict) else None
    return str(client[0]) if client else "?"


class SessionGuard:
    def __init__(
        self, eio: AsyncServer, *, timeout: float, max_unauthenticated: int, max_per_source: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.eio, self.timeout, self.clock = eio, timeout, clock
        self.max_unauthenticated, self.max_per_source = max_unauthenticated, max_per_source
        self.pending: dict[str, tuple[str, float]] = {}  # Engine.IO sid -> (source, opened at): not yet authenticated
        self.pending_by_source: collections.Counter[str] = collections.Counter()
        self.sources: dict[str, str] = {}  # Engine.IO sid -> source, for every open session
        self.refused = self.expired = 0
        self._sweeper: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Wrap the connect and disconnect handlers python-socketio registered with python-engineio."""
        handlers: dict[str, Callable[..., Awaitable[object]]] = self.eio.handlers
        connect, disconnect = handlers["connect"], handlers["disconnect"]

        async def on_connect(eio_sid: str, environ: dict[str, object]) -> object:
            if not self.admit(eio_sid, source_of(environ)):
                return False
            return await connect(eio_sid, environ)

        async def on_disconnect(eio_sid: str, *args: object) -> object:
            self.forget(eio_sid)
            return await disconnect(eio_sid, *args)

        handlers["connect"], handlers["disconnect"] = on_connect, on_disconnect

    def start(self) -> None:
        if self.timeout > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="unauthenticated-sessions")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    def admit(self, eio_sid: str, source: str) -> bool:
        """Count a new session as waiting to authenticate, or refuse it (False) when a cap is reached."""
        if len(self.pending) >= self.max_unauthenticated or self.pending_by_source[source] >= self.max_per_source:
            self.refused += 1
            if self.refused % 1000 == 1:  # a flood of handshakes must not become a flood of log lines
                log.warning(
                    "refused a session from %s: %d waiting to authenticate (%d from that address); limits "
                    "--max-unauthenticated %d, --max-unauthenticated-per-source %d (%d refused so far)",
                    source,
                    len(self.pending),
                    self.pending_by_source[source],
                    self.max_unauthenticated,
                    self.max_per_source,
                    self.refused,
                )
            return False
        self.pending[eio_sid] = (source, self.clock())
        self.pending_by_source[source] += 1
        self.sources[eio_sid] = source
        return True

    def authenticated(self, eio_sid: str) -> None:
        """The session passed the token check: it no longer counts against the unauthenticated limits."""
        entry = self.pending.pop(eio_sid, None)
        if entry is not None:
            self._uncount(entry[0])

    def forget(self, eio_sid: str) -> None:
        self.authenticated(eio_sid)
        self.sources.pop(eio_sid, None)

    def source(self, eio_sid: str) -> str:
        return self.sources.get(eio_sid, "?")

    def _uncount(self, source: str) -> None:
        self.pending_by_source[source] -= 1
        if self.pending_by_source[source] <= 0:
            del self.pending_by_source[source]

    def overdue(self) -> list[str]:
        """Sessions open for longer than the deadline without authenticating (oldest first)."""
        cutoff = self.clock() - self.timeout
        return [eio_sid for eio_sid, (_, opened) in self.pending.items() if opened < cutoff]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_EVERY, self.timeout / 4))
            for eio_sid in self.overdue():
                self.forget(eio_sid)
                self.expired += 1
                socket = self.eio.sockets.get(eio_sid)
                if socket is not None:
                    await end_session(socket, "not authenticated in time")
