"""Issue 17, item 1: a client that stops reading while a container floods costs the manager a bounded queue,
then its connection; the others keep their latency and the memory comes back.

Before the bound, a client that stopped reading held the flood back for 10 s and then was no longer waited
for: its Engine.IO queue grew without bound (hundreds of MB per second with 1 MB frames) and it stayed
connected, so these tests failed on the RSS budget during the attack and never saw the client dropped.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import AsyncIterator, Iterator

import aiodocker
import aiohttp
import pytest

from tests.integration.abuse import ATTACKER, Watch, clients_connected, rss_returns, stalled_websocket
from tests.integration.harness import Client, Server, unique_name, wait_until
from tests.integration.test_hostile_containers import HOSTILE

QUEUE_BYTES = 8 << 20


@pytest.fixture(scope="module")
def slow(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("slow"), "--client-queue-bytes", str(QUEUE_BYTES), "--allow-polling")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def calm(slow: Server) -> AsyncIterator[Client]:
    """The well-behaved client: it reads everything, and wants no container's messages."""
    c = await Client().connect(slow.url)
    await c.call("subscribe_messages", {"container_ids": []})
    yield c
    await c.close()


async def flooding(client: Client) -> str:
    created = await client.call(
        "create_container", {"image": "flow:latest", "name": unique_name("flood"), "command": ["python3", "-c", HOSTILE["flood"]]}
    )
    await client.call("start_container", {"container_id": created["container_id"]})
    return str(created["container_id"])


async def test_a_websocket_client_that_stops_reading_is_dropped_and_told_why(slow: Server, calm: Client):
    stalled = stalled_websocket(slow)  # from now on it reads nothing from its socket (until the end)
    await wait_until(lambda: clients_connected(calm), 10, what="both clients connected", until=lambda n: n == 2)
    watch = (await Watch(calm, slow).calibrate()).start()
    flooder = await flooding(calm)
    try:
        await wait_until(lambda: clients_connected(calm), 45, what="the stalled client dropped", until=lambda n: n == 1, interval=0.5)
    finally:
        await watch.stop()
        await calm.call("delete_container", {"container_id": flooder})
    watch.check("websocket client that stopped reading, beside a 1 MB-frame flood")
    await rss_returns(slow, watch.baseline)
    # It reads again: what was already on its way, then the reason it was dropped, then the end of the session.
    tail = await asyncio.to_thread(read_to_the_end, stalled)
    notice = tail[tail.rindex(b'42["error",') + 2 :]
    error = json.JSONDecoder().raw_decode(notice.decode(errors="replace"))[0][1]
    assert error["error_type"] == "system_error", error
    assert error["details"]["limit"] == "client_queue_bytes" and error["details"]["max"] == QUEUE_BYTES, error


def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server still sends until it closes the connection (the last 64 KiB of it)."""
    tail = b""
    sock.settimeout(30)
    with sock:
        while chunk := sock.recv(1 << 20):
            tail = (tail + chunk)[-(64 << 10) :]
    return tail


async def test_a_polling_client_that_only_pongs_is_dropped(slow: Server, calm: Client):
    base = f"{slow.url}/socket.io/?EIO=4&transport=polling"
    connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(base) as opened:
            sid = json.loads((await opened.text())[1:])["sid"]
        async with http.post(f"{base}&sid={sid}", data="40") as joined:
            assert joined.status == 200
        await wait_until(lambda: clients_connected(calm), 10, what="both clients connected", until=lambda n: n == 2)

        async def pong_forever() -> None:  # keeps the session alive, never GETs what is queued for it
            while True:
                async with http.post(f"{base}&sid={sid}", data="3"):
                    pass
                await asyncio.sleep(1)

        ponger = asyncio.create_task(pong_forever())
        watch = (await Watch(calm, slow).calibrate()).start()
        flooder = await flooding(calm)
        try:
            await wait_until(lambda: clients_connected(calm), 45, what="the polling client dropped", until=lambda n: n == 1, interval=0.5)
        finally:
            ponger.cancel()
            await watch.stop()
            await calm.call("delete_container", {"container_id": flooder})
        watch.check("polling client that only pongs, beside a 1 MB-frame flood")
        await rss_returns(slow, watch.baseline)
        async with http.get(f"{base}&sid={sid}") as after:
            assert after.status == 400  # the session is gone: the client reconnects
