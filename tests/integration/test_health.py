"""`health` comes from the image's HEALTHCHECK; turning unhealthy warns once."""
from __future__ import annotations

import io
import tarfile

import aiodocker
import pytest

from tests.integration.harness import Client, unique_name

# Healthy while /tmp/ok exists; the container's own command creates and later removes it.
DOCKERFILE = """FROM flow:latest
HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["python3", "-c", "import os,sys; sys.exit(0 if os.path.exists('/tmp/ok') else 1)"]
"""


@pytest.fixture(scope="module")
async def health_image(docker: aiodocker.Docker) -> str:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE.encode()))
    context.seek(0)
    await docker.images.build(fileobj=context, encoding="application/x-tar", tag="flow-health-test:latest")
    return "flow-health-test:latest"


async def test_healthy_then_unhealthy_warns_once(client: Client, health_image: str):
    name = unique_name("health")
    # The command creates the marker, lives 4 s healthy, removes it, and keeps running unhealthy.
    script = ("import os,time; open('/tmp/ok','w').close(); time.sleep(4); os.remove('/tmp/ok'); "
              "time.sleep(3600)")
    cid = (await client.call("create_container", {"image": health_image, "name": name,
                                                   "command": ["python3", "-c", script]}))["container_id"]
    await client.call("start_container", {"container_id": cid})
    await client.wait_for("container_status_update", cid, lambda u: u["status"]["health"] == "healthy", timeout=15)
    assert (await client.call("get_container_status", {"container_id": cid}))["health"] in ("healthy", "unhealthy")
    warning = await client.wait_for("container_health_warning", cid, timeout=20)
    assert warning["health"] == "unhealthy" and isinstance(warning["timestamp"], float)
    await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "health_warning")
    await client.wait_for("container_status_update", cid, lambda u: u["status"]["health"] == "unhealthy", timeout=10)
    assert len(client.of("container_health_warning", cid)) == 1
    assert (await client.call("get_container_status", {"container_id": cid}))["health"] == "unhealthy"
    await client.call("delete_container", {"container_id": cid})
