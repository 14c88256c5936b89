"""The TCP side of the server: how many connections uvicorn keeps, and the process limits under them.

A client socket costs the manager a file descriptor before it sends a byte,
and uvicorn keeps a connection that never sends a request forever: 20,000
idle connections once took every descriptor the process had, so the journal
could not be appended (EMFILE) and nobody could connect. Here:

- the soft RLIMIT_NOFILE is raised to the hard limit at start, and
  `--max-connections` must stay `--reserved-fds` below it (it is lowered, with
  a warning, when it does not), so the journal, code snapshots, container links
  and the Docker connection always find descriptors;
- a connection past `--max-connections`, or past `--max-connections-per-source`
  from one address, is closed as soon as it is accepted (its descriptor is
  returned at once);
- a connection that has not sent complete request headers within
  `--handshake-timeout` seconds is closed.

uvicorn's HTTP and websocket protocol classes are subclassed (both, since an
upgraded connection changes protocol object): the count goes up once per TCP
connection, when it is accepted, and down when its last protocol loses it.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import logging
import resource
import warnings
from dataclasses import dataclass, field

from uvicorn.protocols.http.h11_impl import H11Protocol

with warnings.catch_warnings():
    # uvicorn 0.4x announces at import that `--ws websockets` will later mean its sans-I/O implementation; this
    # subclasses the implementation it has today, by name, so the notice says nothing to the operator.
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")  # a UserWarning subclass
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as HttpProtocol
except ImportError:  # httptools is optional for uvicorn
    HttpProtocol = H11Protocol  # type: ignore[misc,assignment]

log = logging.getLogger("flow_manager")
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 256 << 10


@dataclass
class ConnectionLimits:
    total: int
    per_source: int
    handshake_timeout: float
    by_source: collections.Counter[str] = field(default_factory=collections.Counter)
    open: dict[int, str] = field(default_factory=dict)  # id(transport) -> source, for every counted connection
    count: int = 0
    refused: int = 0

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection in, or refuse it (False) past a cap."""
        source = _source(transport)
        if self.count >= self.total or self.by_source[source] >= self.per_source:
            self.refused += 1
            if self.refused % 1000 == 1:
                log.warning(
                    "refused a connection from %s: %d open (%d from that address); limits --max-connections %d, "
                    "--max-connections-per-source %d (%d refused so far)",
                    source,
                    self.count,
                    self.by_source[source],
                    self.total,
                    self.per_source,
                    self.refused,
                )
            return False
        self.count += 1
        self.by_source[source] += 1
        self.open[id(transport)] = source
        return True

    def release(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection ended (once per connection, whichever protocol had it last)."""
        source = self.open.pop(id(transport), None)
        if source is None:
            return
        self.count -= 1
        self.by_source[source] -= 1
        if self.by_source[source] <= 0:
            del self.by_source[source]


def _source(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def http_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    class LimitedHttp(HttpProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's HTTP protocol, counted per connection, refused past the caps, closed when silent."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._fm_counted = limits.admit(transport)
            if not self._fm_counted:
                transport.abort()
                return
            super().connection_made(transport)
            self._fm_deadline = self.loop.call_later(limits.handshake_timeout, self._fm_silent)

        def _fm_silent(self) -> None:
            if self.cycle is None and self.transport.get_protocol() is self and not self.transport.is_closing():
                self.transport.close()  # no complete request in time

        def connection_lost(self, exc: Exception | None) -> None:
            if not self._fm_counted:
                return
            self._fm_deadline.cancel()
            limits.release(self.transport)
            super().connection_lost(exc)

    return LimitedHttp


def websocket_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    class LimitedWebSocket(WebSocketProtocol):
        """uvicorn's websocket protocol: gives the connection's count back when the upgraded connection ends."""

        def connection_lost(self, exc: Exception | None) -> None:
            limits.release(self.transport)
            super().connection_lost(exc)

    return LimitedWebSocket


def raise_file_limit(max_connections: int, reserved: int) -> int:
    """Raise the soft descriptor limit to the hard one; the connection cap that leaves `reserved` descriptors free."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft, target, exc)
    usable = (soft if soft != resource.RLIM_INFINITY else 1 << 20) - reserved
    if max_connections > usable:
        log.warning(
            "--max-connections %d lowered to %d: the descriptor limit is %d and --reserved-fds %d stay for the manager's own files",
            max_connections,
            max(usable, 1),
            soft,
            reserved,
        )
        return max(usable, 1)
    return max_connections


def keep_large_buffers_returnable() -> None:
    """Let glibc give large buffers (link frames, client backlogs) back to the system when they are freed.

    glibc raises its mmap threshold after each large free, after which megabyte buffers come from the heap
    and stay in the process after an abuse ends; a fixed threshold keeps them mmap'd (and returned)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except OSError:
        pass
