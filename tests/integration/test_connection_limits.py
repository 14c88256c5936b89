"""Issue 17, item 3: connections and sessions cost nothing without a token beyond their caps and deadlines.

Before these limits, idle TCP connections were held forever (each a file descriptor: 20,000 of them took the
manager's descriptors), every websocket handshake opened a session that lived until Engine.IO's ping timeout
(45 s) whether or not it ever authenticated, and long-polling handshakes were accepted by default: these
tests then failed on the idle sockets never being closed, on the sessions beyond the caps being accepted and
kept, and on the polling handshake answering 200.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import aiodocker
import aiohttp
import pytest
import websockets

from tests.integration.abuse import ATTACKER, Watch, raw_session, rss_returns
from tests.integration.harness import Client, Server

TOKEN = "availability-test-token-0123456789"
MAX_CONNECTIONS, PER_SOURCE = 64, 48
MAX_UNAUTHENTICATED, UNAUTHENTICATED_PER_SOURCE = 16, 8
DEADLINE = 1.0


@pytest.fixture(scope="module")
def guarded(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("guarded"),
        "--token",
        TOKEN,
        "--max-connections",
        str(MAX_CONNECTIONS),
        "--max-connections-per-source",
        str(PER_SOURCE),
        "--max-unauthenticated",
        str(MAX_UNAUTHENTICATED),
        "--max-unauthenticated-per-source",
        str(UNAUTHENTICATED_PER_SOURCE),
        "--handshake-timeout",
        str(DEADLINE),
        "--auth-timeout",
        str(DEADLINE),
    )
    srv.start()
    yield srv
    srv.stop()


def descriptors(server: Server) -> int:
    assert server.proc is not None
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True


async def test_idle_connections_are_capped_and_closed(guarded: Server):
    before = descriptors(guarded)
    idle = []
    for _ in range(200):  # connect and say nothing, from one address
        sock = socket.socket()
        sock.bind((ATTACKER, 0))
        sock.connect(("127.0.0.1", guarded.port))
        idle.append(sock)
    try:
        calm = await Client().connect(guarded.url, auth={"token": TOKEN})  # another address still gets in
        try:
            assert "containers" in await calm.call("list_containers", {})
            assert descriptors(guarded) - before <= PER_SOURCE + 8, "connections past the per-address cap hold no descriptor"
        finally:
            await calm.close()
        # every idle one is closed by the server: refused at once, or after --handshake-timeout
        started = time.monotonic()
        still_open = [s for s in idle if not await asyncio.to_thread(closed_by_server, s, DEADLINE * 3)]
        assert not still_open, f"{len(still_open)} silent connections still open after {time.monotonic() - started:.1f} s"
    finally:
        for sock in idle:
            sock.close()


async def test_unauthenticated_sessions_are_capped_and_expire(guarded: Server):
    calm = await Client().connect(guarded.url, auth={"token": TOKEN})
    watch = (await Watch(calm, guarded).calibrate()).start()
    opened: list[websockets.asyncio.client.ClientConnection] = []
    refused = 0
    try:
        for _ in range(40):  # handshakes that never send a token
            try:
                opened.append(await raw_session(guarded, join=False))
            except (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed, AssertionError):
                refused += 1
        open_now = [ws for ws in opened if ws.state is websockets.protocol.State.OPEN]
        assert len(open_now) <= UNAUTHENTICATED_PER_SOURCE, f"{len(open_now)} unauthenticated sessions open from one address"
        assert refused >= 40 - UNAUTHENTICATED_PER_SOURCE - 4  # a few may have expired while the others were opened
        for ws in opened:  # each is closed by the server within the deadline (and Engine.IO's close sent first)
            await asyncio.wait_for(ws.wait_closed(), DEADLINE * 4)
    finally:
        await watch.stop()
        for ws in opened:
            await ws.close()
        await calm.close()
    watch.check("40 unauthenticated websocket handshakes")
    await rss_returns(guarded, watch.baseline)


async def test_long_polling_is_off_by_default(server: Server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as answer:
            assert answer.status == 400, await answer.text()


def test_the_descriptor_limit_is_raised_to_the_hard_limit(server: Server):
    assert server.proc is not None
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
