"""A link's connections: accepted within its limits, read frame by frame, and each message dispatched.

The newest connection wins (a restarted runtime). Frames are read with
flow_runtime.framing's reader, the one the runtime uses. A bad or oversized
frame resets that link only; reading waits while the link's messages queue
for clients (back-pressure) and while its frame or byte rate is in debt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from controller.adapters.links import handshake, liveness
from controller.adapters.links.link import MAX_CONNECTIONS, Link
from controller.events import Activity, MessageReceived
from flow_runtime.framing import FrameError, read_sized_frame
from flow_runtime.protocol import HELLO, PONG, RELOADED, is_control

if TYPE_CHECKING:
    from controller.adapters.links.manager import LinkManager

log = logging.getLogger("flow_manager.links")


async def serve(manager: LinkManager, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if link.connections >= MAX_CONNECTIONS:
        writer.close()
        return
    link.connections += 1
    try:
        delay = link.wait_for_connect_slot()
        if delay:
            await asyncio.sleep(delay)
        if manager.links.get(link.container_id) is link:
            await take_over(manager, link, reader, writer)
    finally:
        link.connections -= 1
        writer.close()


async def take_over(manager: LinkManager, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if link.writer is not None:  # the newest connection wins (a restarted runtime)
        link.writer.close()
    # drain() returns only once the kernel took every byte: a send answered "sent" is never still in
    # the transport's buffer, so resetting a link (a cancelled send) loses no frame already answered.
    writer.transport.set_write_buffer_limits(high=0)
    link.writer, link.written = writer, 0
    link.ever_connected, link.waiting_since, link.answered_at, link.disconnected_at = True, None, None, None
    manager.wake(link.container_id)
    try:
        while True:
            while link.busy():  # backpressure: a flood slows only its own link
                link.drained.clear()
                await link.drained.wait()
            await link.paced()  # the frame and byte rates: debts of frames already read are repaid first
            frame = await read_sized_frame(reader, manager.max_frame)
            if frame is None:
                break
            link.charge(frame[1], manager.rate_limit, manager.byte_rate_limit)
            received(manager, link, *frame)
    except FrameError as exc:
        log.warning("link of %s reset: %s", link.container_id, exc)
        manager.sink.publish(Activity("container_error", link.container_id, f"link reset: {exc}", {"error_type": "socket_error"}))
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        if link.writer is writer:
            link.writer = None
            link.revision = None
            link.waiting_since, link.disconnected_at = None, time.time()
            manager.wake(link.container_id)


def received(manager: LinkManager, link: Link, message: dict[str, Any], size: int = 0) -> None:
    command = message.get("command")
    if is_control(command):
        if command == PONG:
            if liveness.answered(link):
                manager.wake(link.container_id)
        elif command in (HELLO, RELOADED) and handshake.reported(link, command, message):
            manager.wake(link.container_id)
        return
    link.last_communication = time.time()
    manager.messages_received += 1
    if manager.sink.publish(MessageReceived(link.container_id, message, link.last_communication), lambda: link.delivered(size)):
        link.queued(size)
    manager.sink.publish(
        Activity(
            "message_received",
            link.container_id,
            f"Message received from container {link.name}",
            {"command": command if isinstance(command, str) else None},
        )
    )
