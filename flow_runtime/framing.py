"""Link framing shared by the manager and the in-container runtime.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON encoding one object. Both ends import this one module so the wire format
cannot drift apart. Standard library only: it runs inside any Python image.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB


class FrameError(ValueError):
    """The peer sent something that is not a valid frame; the link must be reset."""


def encode(message: dict[str, Any], max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    if not isinstance(message, dict):
        raise FrameError("a frame carries a JSON object")
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > max_size:
        raise FrameError(f"frame of {len(body)} bytes exceeds the limit of {max_size}")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("frame is JSON but not an object")
    return message


async def read_sized_frame(reader: asyncio.StreamReader, max_size: int = DEFAULT_MAX_FRAME) -> tuple[dict[str, Any], int] | None:
    """Read one frame and the size of its body (the manager budgets bytes in flight by it);
    None on a clean end of stream between frames. The length is refused from the header alone,
    so an oversized frame allocates nothing."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from None
        return None
    (length,) = HEADER.unpack(header)
    if length > max_size:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_size}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("stream ended inside a frame body") from None
    return decode(body), length


async def read_frame(reader: asyncio.StreamReader, max_size: int = DEFAULT_MAX_FRAME) -> dict[str, Any] | None:
    """Read one frame; None on a clean end of stream between frames."""
    frame = await read_sized_frame(reader, max_size)
    return None if frame is None else frame[0]
