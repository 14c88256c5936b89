"""A link's frame and byte rates hold on the event loop the server really runs (uvloop) and on plain asyncio.

uvloop rounds timers to whole milliseconds (below one, to zero): a wait of
0.5 ms (one frame at 2,000/s) returned at once and the link was read at
whatever rate the container wrote. The server's own read loop is driven here
over a real socket pair, with a container that writes far more than the limit.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from controller.adapters.links import server
from controller.adapters.links.link import Link

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
WINDOW = 0.6  # seconds the link is read


class CountingSink:
    def __init__(self) -> None:
        self.messages = 0

    def publish(self, event: Any, on_delivered: Callable[[], None] | None = None) -> bool:
        if type(event).__name__ == "MessageReceived":
            self.messages += 1
            if on_delivered is not None:
                on_delivered()  # delivered at once: back-pressure plays no part, only the rates
        return False


class FakeManager:
    """What server.take_over uses of the LinkManager."""

    def __init__(self, rate: float, byte_rate: float) -> None:
        self.rate_limit, self.byte_rate_limit, self.max_frame = rate, byte_rate, 1 << 20
        self.sink = CountingSink()
        self.links: dict[str, Link] = {}
        self.messages_received = 0

    def wake(self, key: str) -> None:
        pass


def frame(body_size: int) -> bytes:
    body = json.dumps({"command": "x", "pad": "a" * body_size}).encode()
    return struct.pack(">I", len(body)) + body


async def read_for_a_while(rate: float, byte_rate: float, one_frame: bytes, frames: int) -> tuple[int, float]:
    """Messages the server dispatched in WINDOW seconds while the container wrote `frames` as fast as it could."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    _, container = await asyncio.open_unix_connection(sock=theirs)
    manager = FakeManager(rate, byte_rate)
    link = Link("abc", "name")

    async def flood() -> None:
        for _ in range(frames // 100):
            container.write(one_frame * 100)
            await container.drain()

    loop = asyncio.get_running_loop()
    flooding = asyncio.create_task(flood())
    reading = asyncio.create_task(server.take_over(manager, link, reader, writer))  # type: ignore[arg-type]
    started = loop.time()
    await asyncio.sleep(WINDOW)
    count, elapsed = manager.sink.messages, loop.time() - started
    for task in (reading, flooding):
        task.cancel()
    await asyncio.gather(reading, flooding, return_exceptions=True)
    container.close()
    return count, elapsed


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_message_rate_holds_on_both_event_loops(loop_name: str) -> None:
    rate = 2000.0  # the default: one frame every 0.5 ms, under uvloop's timer resolution
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        count, elapsed = runner.run(read_for_a_while(rate, 0, frame(10), 40_000))
    allowed = rate + rate * elapsed  # the burst (one second's worth) and the rate over the window
    assert count <= allowed * 1.05, f"{count} messages in {elapsed:.2f} s at {rate:.0f}/s on {loop_name}"
    assert count >= rate  # and the limit is not a stall


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_byte_rate_holds_on_both_event_loops(loop_name: str) -> None:
    byte_rate, one_frame = 200_000.0, frame(10_000)  # 10 kB frames, 20 a second
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        count, elapsed = runner.run(read_for_a_while(100_000, byte_rate, one_frame, 2_000))
    allowed = (byte_rate + byte_rate * elapsed) / (len(one_frame) - 4) + 1  # budget + rate, one frame in debt
    assert count <= allowed, f"{count} frames of {len(one_frame)} B in {elapsed:.2f} s on {loop_name}"
    assert count >= byte_rate / len(one_frame)
