"""`health` comes from the image's HEALTHCHECK; turning unhealthy warns once."""

from __future__ import annotations

import io
import tarfile
import time

import aiodocker
import pytest

from tests.integration.harness import Client, unique_name, wait_until

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


async def test_healthy_then_unhealthy_warns_once(client: Client, docker: aiodocker.Docker, health_image: str):
    name = unique_name("health")
    # The command creates the marker and keeps running: healthy until the test removes the marker.
    script = "import time; open('/tmp/ok','w').close(); time.sleep(3600)"
    created = await client.call("create_container", {"image": health_image, "name": name, "command": ["python3", "-c", script]})
    cid = created["container_id"]
    await client.call("start_container", {"container_id": cid})
    await client.wait_for("container_status_update", cid, lambda u: u["status"]["health"] == "healthy", timeout=15)
    assert (await client.call("get_container_status", {"container_id": cid}))["health"] == "healthy"
    assert not client.of("container_health_warning", cid), "healthy is no warning"

    removal = await docker.containers.container(created["docker_id"]).exec(["rm", "/tmp/ok"])
    removed_at = time.time()  # no earlier than this can the health check fail
    await removal.start(detach=True)
    done = await wait_until(removal.inspect, 10, until=lambda e: not e["Running"], what="rm /tmp/ok to finish")
    assert done["ExitCode"] == 0, done
    warning = await client.wait_for("container_health_warning", cid, timeout=20)
    assert warning["health"] == "unhealthy" and removed_at <= warning["timestamp"] <= time.time(), warning
    await client.wait_for("activity_log", cid, lambda a: a["activity_type"] == "health_warning")
    await client.wait_for("container_status_update", cid, lambda u: u["status"]["health"] == "unhealthy", timeout=10)
    assert len(client.of("container_health_warning", cid)) == 1
    assert (await client.call("get_container_status", {"container_id": cid}))["health"] == "unhealthy"
    await client.call("delete_container", {"container_id": cid})
