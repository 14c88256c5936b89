"""Per-link limits that keep one container's misbehaviour on its own link."""

from __future__ import annotations

import asyncio
import struct

import pytest

from controller.adapters.links import link as links
from controller.adapters.links.link import CONNECT_BURST, CONNECT_RATE, IN_FLIGHT_BYTES, Link
from flow_runtime.framing import FrameError, read_sized_frame


def test_reconnections_are_rate_limited_after_a_burst(monkeypatch: pytest.MonkeyPatch):
    now = [1000.0]
    monkeypatch.setattr(links.time, "monotonic", lambda: now[0])
    link = Link("abc", "name")
    assert [link.wait_for_connect_slot() for _ in range(CONNECT_BURST)] == [0.0] * CONNECT_BURST
    waits = [link.wait_for_connect_slot() for _ in range(3)]  # each one reserves its slot
    assert waits == pytest.approx([1 / CONNECT_RATE, 2 / CONNECT_RATE, 3 / CONNECT_RATE])
    now[0] += 100
    assert link.wait_for_connect_slot() == 0.0


def test_large_frames_in_flight_stop_the_link_before_the_count_does():
    link = Link("abc", "name")
    assert not link.busy()
    link.in_flight, link.in_flight_bytes = 4, IN_FLIGHT_BYTES
    assert link.busy()
    link.delivered(IN_FLIGHT_BYTES // 2 + 1)
    assert not link.busy() and link.drained.is_set()


async def test_sized_frames_and_refused_headers():
    reader = asyncio.StreamReader()
    body = b'{"command":"x"}'
    reader.feed_data(struct.pack(">I", len(body)) + body + struct.pack(">I", 0xFFFFFFFF))
    assert await read_sized_frame(reader, 1 << 20) == ({"command": "x"}, len(body))
    with pytest.raises(FrameError, match="exceeds"):
        await read_sized_frame(reader, 1 << 20)  # refused from the header alone: nothing is allocated
    reader = asyncio.StreamReader()
    reader.feed_eof()
    assert await read_sized_frame(reader, 10) is None
