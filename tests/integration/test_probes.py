"""/healthz and /readyz flip with the Docker engine: a private engine is killed and started again.

Alive all along (nothing outside the process makes the manager not alive); not ready while the engine is
gone, ready again once it answers and the controller has listed its containers. `flow-manager
healthcheck --ready` exits 1 and 0 accordingly. Each answer comes within a fraction of a second.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import aiodocker
import aiohttp
import pytest

from tests.integration.harness import Server, wait_until
from tests.integration.private_engine import PrivateEngine

ANSWER_WITHIN = 0.5  # seconds; the probes read figures in memory (well under a millisecond on an idle machine)


@pytest.fixture(scope="module")
def engine(docker: aiodocker.Docker) -> Iterator[PrivateEngine]:
    private = PrivateEngine()
    try:
        private.start()
        yield private
    finally:
        private.close()


@pytest.fixture
def manager(engine: PrivateEngine, tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path, "--engine-retry-max", "1", docker_host=engine.url)
    server.start()
    yield server
    server.stop()


async def probe(url: str) -> tuple[int, dict[str, object]]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            status, body = response.status, await response.json()
    assert time.monotonic() - started < ANSWER_WITHIN, f"{url} took {time.monotonic() - started:.3f} s"
    return status, body


def healthcheck(url: str) -> int:
    return subprocess.run([sys.executable, "-m", "flow_manager.cli", "healthcheck", "--url", url], capture_output=True, timeout=30).returncode


async def test_readiness_follows_the_engine_and_liveness_does_not(manager: Server, engine: PrivateEngine):
    ready, alive = f"{manager.url}/readyz", f"{manager.url}/healthz"
    status, body = await wait_until(lambda: probe(ready), 20, until=lambda r: r[0] == 200, what="ready after start")
    assert body == {"status": "ready", "checks": {"journal": "ok", "listening": "ok", "docker_engine": "ok", "relist": "ok"}}
    assert healthcheck(ready) == 0

    engine.kill(signal.SIGKILL)
    status, body = await wait_until(lambda: probe(ready), 15, until=lambda r: r[0] == 503, what="not ready once the engine is gone")
    assert body["status"] == "not ready"
    assert body["checks"] == {"journal": "ok", "listening": "ok", "docker_engine": "Docker engine unreachable", "relist": "ok"}
    assert engine.url not in json.dumps(body)  # fixed phrases, nothing of the engine's address or error text
    assert healthcheck(ready) == 1
    status, body = await probe(alive)
    assert status == 200 and body == {"status": "alive", "checks": {"event_loop": "ok", "controller": "ok"}}
    assert healthcheck(alive) == 0

    engine.start()
    status, body = await wait_until(lambda: probe(ready), 30, until=lambda r: r[0] == 200, what="ready again once the engine answers")
    assert body["status"] == "ready"
    assert healthcheck(ready) == 0
    assert (await probe(alive))[0] == 200


async def test_not_ready_until_the_engine_first_answers(engine: PrivateEngine, tmp_path: Path):
    engine.kill(signal.SIGKILL)
    server = Server(tmp_path, "--engine-retry-max", "1", docker_host=engine.url)
    server.start()
    try:
        status, body = await wait_until(
            lambda: probe(f"{server.url}/readyz"), 15, until=lambda r: r[0] == 503 and r[1]["checks"]["docker_engine"] != "ok", what="engine down"
        )
        assert body["checks"]["relist"] == "Docker's containers not listed yet"
        assert (await probe(f"{server.url}/healthz"))[0] == 200
        engine.start()
        await wait_until(lambda: probe(f"{server.url}/readyz"), 30, until=lambda r: r[0] == 200, what="ready once the engine answers")
    finally:
        server.stop()
        if not engine.answers():
            engine.start()
