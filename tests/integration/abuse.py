"""What the availability tests share: a well-behaved client's latency, the manager's RSS, raw Engine.IO clients.

Attackers connect from 127.0.0.2 (all of 127/8 is loopback on Linux) and the well-behaved client from
127.0.0.1, so limits per source address apply to the attack and not to the client measured beside it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.integration.harness import Client, Server
from tests.integration.test_links import rss_mb

ATTACKER = "127.0.0.2"
# The well-behaved client's list_containers p99 while an attack runs beside it: 250 ms, or on a machine busy
# with other work 4x the p99 of the same requests just before the attack, and never over 1 s.
LATENCY_BUDGET, LOADED_FACTOR, LATENCY_CEILING = 0.25, 4.0, 1.0  # seconds, -, seconds
RSS_BUDGET = 200.0  # MB above the manager's RSS before the attack, at any time during it
RSS_AFTER = 60.0  # MB above that baseline once the attack is over


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class Watch:
    """The well-behaved client's list_containers latencies and the manager's RSS, sampled until stopped."""

    def __init__(self, client: Client, server: Server) -> None:
        self.client, self.server = client, server
        assert server.proc is not None
        self.baseline = rss_mb(server.proc.pid)
        self.latencies: list[float] = []
        self.calm: list[float] = []  # calibrate(): latencies without the attack
        self.rss: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def calibrate(self, seconds: float = 1.0) -> "Watch":
        """The same requests without the attack, on this machine now: the budget allows for a loaded machine."""
        for _ in range(int(seconds / 0.05)):
            started = time.monotonic()
            await self.client.call("list_containers", {}, timeout=10)
            self.calm.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
        return self

    def budget(self) -> float:
        return min(LATENCY_CEILING, max(LATENCY_BUDGET, LOADED_FACTOR * p99(self.calm))) if self.calm else LATENCY_BUDGET

    def start(self) -> "Watch":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        assert self.server.proc is not None
        while not self._stop.is_set():
            started = time.monotonic()
            listing = await self.client.call("list_containers", {}, timeout=10)
            self.latencies.append(time.monotonic() - started)
            assert "containers" in listing, listing
            self.rss.append(rss_mb(self.server.proc.pid))
            assert self.rss[-1] - self.baseline < RSS_BUDGET, f"manager RSS {self.baseline:.0f} -> {self.rss[-1]:.0f} MB during the attack"
            await asyncio.sleep(0.05)  # 20 requests per second: well under every limit

    def report(self, what: str) -> str:
        return (
            f"{what}: {len(self.latencies)} list_containers, p99 {p99(self.latencies) * 1000:.0f} ms, "
            f"max {max(self.latencies) * 1000:.0f} ms (budget {self.budget() * 1000:.0f} ms); RSS {self.baseline:.0f} -> peak {max(self.rss):.0f} MB"
        )

    def check(self, what: str) -> None:
        print("\n" + self.report(what))
        assert self.latencies, "the well-behaved client was measured"
        assert p99(self.latencies) <= self.budget(), self.report(what)


async def rss_returns(server: Server, baseline: float, timeout: float = 20.0) -> float:
    """Wait until the manager's RSS is back within RSS_AFTER of `baseline`; fails with the last value seen."""
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    while True:
        now = rss_mb(server.proc.pid)
        if now - baseline < RSS_AFTER:
            return now
        assert time.monotonic() < deadline, f"manager RSS stayed at {now:.0f} MB after the attack (baseline {baseline:.0f} MB)"
        await asyncio.sleep(0.2)


async def clients_connected(client: Client) -> int:
    metrics = await client.call("get_metrics", {})
    return int(metrics["clients"])


async def raw_session(
    server: Server, auth: dict[str, Any] | None = None, source: str = ATTACKER, join: bool = True, **options: Any
) -> ClientConnection:
    """A websocket Engine.IO session opened by hand (from `source`); joined to "/" unless `join` is False."""
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    ws = await connect(url, local_addr=(source, 0), open_timeout=10, max_size=None, **options)
    opened = await asyncio.wait_for(ws.recv(), 10)
    assert str(opened).startswith("0"), opened
    if join:
        await ws.send("40" + (json.dumps(auth) if auth else ""))
        while not str(reply := await asyncio.wait_for(ws.recv(), 10)).startswith("40"):
            assert not str(reply).startswith("44"), reply
    return ws


def masked_text_frame(text: str) -> bytes:
    """A client's websocket text frame (short payloads only), masked with a zero key as RFC 6455 allows."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def stalled_websocket(server: Server, source: str = ATTACKER) -> socket.socket:
    """A websocket session joined to "/" by hand over a plain socket, with a small receive buffer, that the
    caller then simply never reads: nothing in the test process reads it behind the caller's back."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    received = b""
    while b'"sid"' not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    sock.sendall(masked_text_frame("40"))
    while b"40{" not in received:  # Socket.IO's connect answer
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    return sock
