"""Fixtures: a real Docker engine, the real flow image, the real server process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator, Generator, Iterator

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """A failed test shows the end of the logs of the servers it talked to: a flaky failure in CI is
    otherwise gone with the machine."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    logs: list[Path] = []
    for key in ("tmp_path", "workdir"):
        directory = funcargs.get(key)
        if isinstance(directory, Path):
            logs += sorted(directory.glob("server-*.log"))
    for path in logs:
        text = path.read_text(errors="replace")
        report.sections.append((f"server log {path.name} (last 8000 characters)", text[-8000:]))


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
