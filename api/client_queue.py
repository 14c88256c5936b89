"""Every client's Engine.IO send queue, bounded in bytes: a client that cannot keep up is dropped.

python-engineio gives each session an unbounded `asyncio.Queue` of packets
waiting to be written. A client that stops reading (a websocket whose reader
stalled, a long-polling client that POSTs pongs but never GETs) let that queue
grow with every broadcast: a flooding container took the manager to gigabytes.
Here each session's queue counts the bytes it holds; a packet that would take
it past `limit` drops the client instead: the queued packets are freed at
once, one `error` event (system_error, details.limit = "client_queue_bytes")
is queued in their place followed by Engine.IO's close, so a client that
resumes reading learns why it was disconnected, and nothing else is queued
for it again. The session is then closed (python-socketio's disconnect
handlers run, the broadcaster forgets it); the TCP connection of a websocket
that never reads again ends at the websocket ping timeout.

The queue also reports its bytes as a backlog in frames (`backlog()`), so the
broadcaster's back-pressure, which counts frames, sees a few huge frames as
the large backlog they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, TypeAlias

from engineio import AsyncServer, async_socket
from engineio import packet as engineio_packet

from api.errors import error_payload

log = logging.getLogger("flow_manager.api")
CONTROL_BYTES = 64  # what a packet without string data (open, ping, close) is counted as
FRAMES_PER_BUDGET = 1024  # backlog(): a queue holding a quarter of its budget reads as 256 frames


def packet_bytes(item: object) -> int:
    data = getattr(item, "data", None)
    if isinstance(data, str):  # what goes on the wire is UTF-8: count bytes, not characters
        return len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
    return len(data) if isinstance(data, bytes) else CONTROL_BYTES


def drop_notice(limit: int, queued: int) -> engineio_packet.Packet:
    """The last event a dropped client gets: the documented error shape, as a Socket.IO event frame."""
    error = error_payload(
        "system_error",
        f"this client fell {queued} bytes behind (more than --client-queue-bytes {limit}) and was disconnected; reconnect and read faster",
        {"operation": "(connection)", "limit": "client_queue_bytes", "max": limit, "bytes": queued},
    )
    return engineio_packet.Packet(engineio_packet.MESSAGE, data="2" + json.dumps(["error", error], separators=(",", ":")))


Item: TypeAlias = engineio_packet.Packet | None  # None: the writer's end-of-stream marker


class ClientQueue(asyncio.Queue[Item]):
    """One session's send queue: unbounded in packets like python-engineio's, bounded in bytes."""

    def __init__(self, limit: int, on_drop: Callable[["ClientQueue"], None]) -> None:
        super().__init__()
        self.limit, self.on_drop = limit, on_drop
        self.bytes = 0
        self.dropped = False

    def put_nowait(self, item: Item) -> None:
        if item is None:  # the writer's end-of-stream marker
            super().put_nowait(item)
            return
        if self.dropped and getattr(item, "packet_type", None) == engineio_packet.MESSAGE:
            return  # a dropped client gets nothing more but the close that follows its notice
        size = packet_bytes(item)
        if not self.dropped and self.bytes + size > self.limit:
            self._drop(self.bytes + size)
            return
        self.bytes += size
        super().put_nowait(item)

    def get_nowait(self) -> Item:  # get() takes its item through get_nowait() too
        item = super().get_nowait()
        if item is not None:
            self.bytes = max(0, self.bytes - packet_bytes(item))
        return item

    def backlog(self) -> int:
        """Frames queued, or more when they are large: bytes in units of a 1/FRAMES_PER_BUDGET of the budget."""
        return max(self.qsize(), self.bytes * FRAMES_PER_BUDGET // max(1, self.limit))

    def _drop(self, queued: int) -> None:
        """Free everything queued, leave the notice (and any end marker) in its place, and report the drop."""
        ended = False
        while not self.empty():
            ended |= super().get_nowait() is None
            self.task_done()
        self.bytes, self.dropped = 0, True
        super().put_nowait(drop_notice(self.limit, queued))
        if ended:
            super().put_nowait(None)
        self.on_drop(self)


class QueueBudget:
    """Installs ClientQueue as python-engineio's queue and closes the sessions whose queue overflowed."""

    def __init__(self, eio: AsyncServer, limit: int) -> None:
        self.eio, self.limit = eio, limit
        self.drops = 0
        self._closing: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        """Every session created from now on gets a bounded queue (python-engineio calls create_queue() once per session)."""
        if self.limit > 0:
            self.eio.create_queue = lambda *args, **kwargs: ClientQueue(self.limit, self._dropped)

    def queued_bytes(self) -> int:
        return sum(getattr(s.queue, "bytes", 0) for s in list(self.eio.sockets.values()))

    def _dropped(self, queue: ClientQueue) -> None:
        self.drops += 1
        for sid, socket in list(self.eio.sockets.items()):
            if socket.queue is queue:
                log.warning("client session %s fell more than %d bytes behind: disconnected", sid, self.limit)
                task = asyncio.get_running_loop().create_task(self._close(socket), name="drop-slow-client")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                return

    async def _close(self, socket: async_socket.AsyncSocket) -> None:
        await end_session(socket, "client too slow")


async def end_session(socket: async_socket.AsyncSocket, reason: str) -> None:
    """Close an Engine.IO session without waiting for its queue to drain (it may never): the disconnect handlers
    run now, the client is sent Engine.IO's close, and a websocket writer is told to finish (it then closes the
    websocket), so the connection ends even when the client never sends another byte."""
    try:
        await socket.close(wait=False, abort=False, reason=reason)
        socket.queue.put_nowait(None)
    except Exception:  # the connection may already be gone
        log.debug("closing session %s failed", getattr(socket, "sid", "?"), exc_info=True)
