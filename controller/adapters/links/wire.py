"""Frames onto a link's socket: a send that either reaches the kernel or resets the link, and writes that never wait.

Frames are flow_runtime.framing's (4-byte big-endian length + UTF-8 JSON
object), the same module the runtime reads them with. A peer that stops
reading is cut off.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controller.adapters.links.link import Link, LinkFailure
from flow_runtime.framing import FrameError, encode
from flow_runtime.protocol import is_control

WRITE_BUFFER_LIMIT = 8 << 20  # a peer that stops reading is cut off past this


async def send(link: Link | None, message: dict[str, Any], max_frame: int, send_timeout: float) -> None:
    """Hand one frame to the container's link.

    Returning means the whole frame reached the kernel's socket buffer (the transport buffers nothing
    ahead of it, see server.take_over), so it is delivered unless the container goes away. A frame the
    container does not take within the send timeout is cancelled: the link is reset while part of the
    frame is still unsent, so the container never reads it as a message (a truncated frame is discarded
    by the framing) and a client may retry without duplicates; the runtime dials again.
    """
    if link is None or link.writer is None or link.writer.is_closing():
        raise LinkFailure("socket_connection_error", "the container's link is not connected")
    try:
        frame = encode(message, max_frame)
    except (FrameError, TypeError, ValueError) as exc:
        raise LinkFailure("socket_error", f"message cannot be framed: {exc}") from None
    async with link.write_lock:  # frames from concurrent senders never interleave
        writer = link.writer
        if writer is None or writer.is_closing():
            raise LinkFailure("socket_connection_error", "the container's link is not connected")
        if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            writer.close()
            raise LinkFailure("socket_error", "the container is not reading its link; link reset")
        try:
            writer.write(frame)
            link.written += len(frame)
            end = link.written
            if writer.transport.get_write_buffer_size() or writer.transport.is_closing():
                # Only a frame the kernel did not take at once needs waiting for (wait_for costs a task).
                await asyncio.wait_for(writer.drain(), send_timeout)
        except TimeoutError:
            current = writer is link.writer and not writer.transport.is_closing()
            if current and link.written - writer.transport.get_write_buffer_size() >= end:
                pass  # the frame is in the kernel; only a ping written after it is waiting
            else:
                writer.transport.abort()  # drops the frame's unsent rest: never delivered
                raise LinkFailure(
                    "socket_timeout_error",
                    f"the container did not read the message within {send_timeout:g} s; the message was "
                    "cancelled and the link reset (the container may dial again)",
                    delivery="not_delivered" if current else "unknown",
                    link_reset=True,
                ) from None
        except (ConnectionError, OSError) as exc:
            raise LinkFailure("socket_error", f"link write failed: {exc}", delivery="unknown") from None
    if not is_control(message.get("command")):
        link.last_communication = time.time()


def write_now(writer: asyncio.StreamWriter, link: Link, message: dict[str, Any], max_frame: int) -> None:
    """Write a frame without waiting, unless the peer already has too much unread (then nothing is written)."""
    if writer.transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT:
        frame = encode(message, max_frame)
        writer.write(frame)
        link.written += len(frame)
