"""python-engineio's per-frame cost, lowered without changing what it does.

Every frame the manager sends goes through Engine.IO's per-client queue and
writer task. The writer waits for the next frame with
`asyncio.wait_for(queue.get(), timeout)`, which on Python 3.11 wraps the get
in a new Task for every frame; with every container message broadcast to
every client that was a large share of the manager's CPU per message
(docs/performance.md). The replacement waits with `asyncio.timeout()` (no new
task) and takes frames already queued without waiting at all; timeouts,
cancellation and the end-of-stream marker behave as in the original.

Applied only to the python-engineio code it was written against: if
`AsyncSocket.poll` is not the method this replaces, nothing is changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from typing import Any

from engineio import async_socket, exceptions

log = logging.getLogger("flow_manager.api")
# sha256 (first 8 hex digits) of the source of the AsyncSocket.poll this replaces (python-engineio 4.15.1).
REPLACED_POLL = "826f58a9"


async def poll(self: Any) -> list[Any]:
    """Wait for packets to send to the client (python-engineio's AsyncSocket.poll, without a task per frame)."""
    queue: asyncio.Queue[Any] = self.queue
    if queue.empty():
        try:
            async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                first = await queue.get()
        except (TimeoutError, asyncio.CancelledError):
            raise exceptions.QueueEmpty() from None
    else:
        first = queue.get_nowait()
    queue.task_done()
    if first is None:
        return []
    packets = [first]
    while True:
        try:
            pkt = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        queue.task_done()
        if pkt is None:
            queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


def source_digest(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:8]


def apply() -> bool:
    """Install the cheaper poll when python-engineio's is the one it replaces; True when installed."""
    current = async_socket.AsyncSocket.poll
    if current is poll:
        return True
    try:
        digest = source_digest(current)
    except (OSError, TypeError):
        digest = "?"
    if digest != REPLACED_POLL:
        log.info("python-engineio's AsyncSocket.poll is not the one api.engineio_tuning replaces (%s); left as it is", digest)
        return False
    async_socket.AsyncSocket.poll = poll  # type: ignore[method-assign]
    return True
