"""Issue 17, item 4: many connections from one address, each within its own rate limit, cannot slow the
others down, and requests beyond the in-flight bounds are refused at once instead of queued.

Before these limits, each connection had only its own rate limit: requests from one address added up without
bound, and requests that wait (here send_message to a container that never reads) queued as tasks however
many a connection had in flight. These tests then failed on no request being refused with
details.limit (neither max_requests_in_flight_per_connection nor source_rate_limit).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Iterator

import aiodocker
import pytest
from websockets.asyncio.client import ClientConnection

from tests.integration.abuse import Watch, raw_session, rss_returns
from tests.integration.harness import Client, Server, unique_name
from tests.integration.test_hostile_containers import HOSTILE

ATTACK_CONNECTIONS, ATTACK_RATE, ATTACK_SECONDS = 100, 20, 10.0  # 2,000 requests per second from one address
SOURCE_RATE = 500


@pytest.fixture(scope="module")
def limited(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("limited"), "--source-rate-limit", str(SOURCE_RATE), "--source-rate-burst", str(SOURCE_RATE))
    srv.start()
    yield srv
    srv.stop()


async def test_requests_beyond_the_in_flight_bound_are_refused_not_queued(limited: Server):
    client = await Client().connect(limited.url)
    created = await client.call(
        "create_container", {"image": "flow:latest", "name": unique_name("deaf"), "command": ["python3", "-c", HOSTILE["never_reads"]]}
    )
    cid = created["container_id"]
    try:
        await client.call("start_container", {"container_id": cid})
        await client.wait_for("message_received", cid, lambda m: m["message"]["command"] == "hello", timeout=20)
        big = {"container_id": cid, "message": {"data": "m" * 200_000}}  # fills the socket, then each waits --send-timeout
        answers = await asyncio.gather(*(client.call("send_message", big, timeout=120) for _ in range(60)))
        limits = Counter(a.get("details", {}).get("limit") for a in answers if a.get("error"))
        print(f"\n60 concurrent send_message on one connection: {dict(limits)}")
        assert limits["max_requests_in_flight_per_connection"] >= 60 - 32 - 4, answers[-1]
        refused = next(a for a in answers if a.get("details", {}).get("limit") == "max_requests_in_flight_per_connection")
        assert refused["error_type"] == "system_error" and refused["details"]["max"] == 32
    finally:
        await client.call("delete_container", {"container_id": cid})
        await client.close()


async def attacker(ws: ClientConnection, cid: str, stop: asyncio.Event, answers: Counter[str]) -> None:
    """One connection sending get_container_status at ATTACK_RATE (within its own limit), reading every answer."""

    async def read() -> None:
        async for frame in ws:
            text = str(frame)
            if text.startswith('42["error"'):
                answers[json.loads(text[2:])[1]["details"].get("limit") or "error"] += 1
            elif text.startswith('42["container_status"'):
                answers["answered"] += 1

    reader = asyncio.create_task(read())
    request = "42" + json.dumps(["get_container_status", {"container_id": cid}])
    try:
        while not stop.is_set():
            await ws.send(request)
            await asyncio.sleep(1 / ATTACK_RATE)
    finally:
        await ws.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_many_connections_from_one_address_leave_others_their_latency(limited: Server):
    calm = await Client().connect(limited.url)
    created = await calm.call("create_container", {"image": "flow:latest", "name": unique_name("target")})
    cid = created["container_id"]
    sessions = [await raw_session(limited) for _ in range(ATTACK_CONNECTIONS)]
    watch = Watch(calm, limited).start()
    stop, answers = asyncio.Event(), Counter[str]()
    attacks = [asyncio.create_task(attacker(ws, cid, stop, answers)) for ws in sessions]
    started = time.monotonic()
    try:
        await asyncio.sleep(ATTACK_SECONDS)  # the attack's length: the watch measures meanwhile
    finally:
        stop.set()
        await asyncio.gather(*attacks, return_exceptions=True)
        await watch.stop()
    elapsed = time.monotonic() - started
    print(f"\nattack: {sum(answers.values()) / elapsed:.0f} answers/s over {elapsed:.1f} s: {dict(answers)}")
    watch.check(f"{ATTACK_CONNECTIONS} connections x {ATTACK_RATE}/s get_container_status from one address")
    assert answers["source_rate_limit"] > 0, answers  # the address's limit refused the excess
    assert answers["answered"] <= SOURCE_RATE * 2 * elapsed, answers
    await rss_returns(limited, watch.baseline)
    await calm.call("delete_container", {"container_id": cid})
    await calm.close()
