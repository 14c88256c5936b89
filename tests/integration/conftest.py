"""Fixtures: a real Docker engine, the real flow image, the real server process."""
from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiodocker
import pytest

from controller import labels
from flow_manager.image import ensure_flow_image
from tests.integration.harness import RUN_ID, Client, Server

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        await client.version()
    except Exception as exc:  # a clear failure, never a silent skip
        pytest.fail(f"integration tests need a running Docker engine: {exc!r}")
    await ensure_flow_image(client, "flow:latest")
    yield client
    for container in await client.containers.list(all=True, filters=labels.managed_filter()):  # every instance
        if container._container.get("Names", [""])[0].lstrip("/").startswith(f"fmtest-{RUN_ID}"):
            await container.delete(force=True)
    await client.close()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flow-manager")


@pytest.fixture(scope="session")
def server(docker: aiodocker.Docker, workdir: Path) -> Iterator[Server]:
    srv = Server(workdir)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    c = await Client().connect(server.url)
    yield c
    await c.close()
