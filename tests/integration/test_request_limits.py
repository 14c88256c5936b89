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
import sys
import time
from collections import Counter
from typing import Iterator

import aiodocker
import pytest

from tests.integration.abuse import Watch, rss_returns
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


async def test_many_connections_from_one_address_leave_others_their_latency(limited: Server):
    calm = await Client().connect(limited.url)
    created = await calm.call("create_container", {"image": "flow:latest", "name": unique_name("target")})
    cid = created["container_id"]
    watch = await Watch(calm, limited).calibrate()  # before the attack
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.request_flood",
        *map(str, (limited.port, cid, ATTACK_CONNECTIONS, ATTACK_RATE, ATTACK_SECONDS)),
        stdout=asyncio.subprocess.PIPE,
    )
    assert flood.stdout is not None
    assert (await asyncio.wait_for(flood.stdout.readline(), 60)).strip() == b"ready"
    watch.start()
    started = time.monotonic()
    try:
        out, _ = await asyncio.wait_for(flood.communicate(), ATTACK_SECONDS + 60)
    finally:
        await watch.stop()
        if flood.returncode is None:
            flood.kill()
    elapsed = time.monotonic() - started
    answers = Counter(json.loads(out.decode().strip().splitlines()[-1]))
    print(f"\nattack: {sum(answers.values()) / elapsed:.0f} answers/s over {elapsed:.1f} s: {dict(answers)}")
    watch.check(f"{ATTACK_CONNECTIONS} connections x {ATTACK_RATE}/s get_container_status from one address")
    assert answers["source_rate_limit"] > 0, answers  # the address's limit refused the excess
    assert answers["answered"] <= SOURCE_RATE * 2 * elapsed, answers
    await rss_returns(limited, watch.baseline)
    await calm.call("delete_container", {"container_id": cid})
    await calm.close()
