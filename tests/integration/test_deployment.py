"""The chart's manager container, as rendered for engine.mode=host, run under Docker with the offline
manager image, serves the README's client flow.

No Kubernetes cluster can run here, so this does what the kubelet would do for that one pod, from the
rendered pod spec and nothing else: the init container and the manager container with their image,
command, args, env, ports, user, groups (supplementalGroups + fsGroup), read-only root filesystem,
capabilities, and each volume mount materialised the way the kubelet does (hostPath: the node path,
here the real Docker socket and a temporary link directory; emptyDir: a fresh 0777 directory; secret:
its items as files of the fsGroup). The client then does create, start, a message over the link,
status and delete: the container topology the chart deploys (manager in a container, engine outside,
link directory translated with --socket-host-dir) works end to end.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import stat
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import aiodocker
import pytest
import socketio
import yaml

from flow_manager.manager_image import default_tag, ensure_manager_image
from tests.deploy.tools import CHART, CHECKOUT, helm, tool
from tests.integration.harness import Client, free_port, record_timing, unique_name, wait_until
from tests.integration.test_links import ping, wait_link

DOCKER_SOCKET = "/var/run/docker.sock"


def render_host_mode(link_dir: Path, instance: str) -> list[dict[str, Any]]:
    socket_group = os.stat(DOCKER_SOCKET).st_gid
    assert socket_group != 0, f"{DOCKER_SOCKET} belongs to group root: give it a docker group (the chart refuses GID 0)"
    result = subprocess.run(
        [
            helm(),
            "template",
            "it",
            str(CHART),
            "--set",
            "engine.mode=host",
            "--set",
            f"engine.host.socketGroup={socket_group}",
            "--set",
            f"engine.host.linkDir={link_dir}",
            "--set",
            f"engine.host.socketPath={DOCKER_SOCKET}",
            "--set",
            "persistence.enabled=false",
            "--set",
            f"instance={instance}",
            "--set",
            "server.flowImage=flow:latest",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


class Kubelet:
    """Just enough of a kubelet to run one rendered pod's containers on the local engine."""

    def __init__(self, docker: aiodocker.Docker, docs: list[dict[str, Any]], scratch: Path) -> None:
        self.docker, self.scratch = docker, scratch
        self.pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        self.secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
        self.volumes = {v["name"]: v for v in self.pod["volumes"]}
        self.fs_group: int = self.pod["securityContext"]["fsGroup"]
        self.sources: dict[str, str] = {}
        self.created: list[aiodocker.containers.DockerContainer] = []

    def source(self, name: str) -> str:
        """The host path a volume is, prepared once as the kubelet would."""
        if name in self.sources:
            return self.sources[name]
        volume = self.volumes[name]
        if "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") == "Socket":
                assert stat.S_ISSOCK(path.stat().st_mode), f"{path} is not a socket"
            else:
                path.mkdir(parents=True, exist_ok=True)  # DirectoryOrCreate: root-owned 0755
                path.chmod(0o755)
        elif "emptyDir" in volume:
            path = self.scratch / "emptyDir" / name
            path.mkdir(parents=True)
            path.chmod(0o777)
        elif "secret" in volume:
            spec = volume["secret"]
            data = self.secrets[spec["secretName"]]["data"]
            path = self.scratch / "secret" / name
            path.mkdir(parents=True)
            for item in spec["items"]:
                file = path / item["path"]
                file.write_bytes(base64.b64decode(data[item["key"]]))
                os.chown(file, 0, self.fs_group)
                file.chmod(spec["defaultMode"])
        else:
            raise AssertionError(f"this test does not know how to provide volume {volume}")
        self.sources[name] = str(path)
        return str(path)

    def config(self, container: dict[str, Any], name: str, ports: dict[int, int]) -> dict[str, Any]:
        context = container.get("securityContext", {})
        assert not context.get("privileged"), f"{container['name']} is privileged: it cannot run here"
        user = str(context.get("runAsUser", 0))
        if "runAsGroup" in context:
            user += f":{context['runAsGroup']}"
        binds = [f"{self.source(m['name'])}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}" for m in container.get("volumeMounts", [])]
        env = []
        for variable in container.get("env", []):
            assert "value" in variable, f"only literal env values are modelled here: {variable}"
            env.append(f"{variable['name']}={variable['value']}")
        capabilities = context.get("capabilities", {})
        host: dict[str, Any] = {
            "Binds": binds,
            "GroupAdd": [str(g) for g in self.pod["securityContext"].get("supplementalGroups", [])] + [str(self.fs_group)],
            "ReadonlyRootfs": bool(context.get("readOnlyRootFilesystem")),
            "CapDrop": capabilities.get("drop", []),
            "CapAdd": capabilities.get("add", []),
            "SecurityOpt": [] if context.get("allowPrivilegeEscalation", True) else ["no-new-privileges"],
            "PortBindings": {f"{c}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(h)}] for c, h in ports.items()},
        }
        config: dict[str, Any] = {
            "Image": container["image"],
            "User": user,
            "Env": env,
            "HostConfig": host,
            "ExposedPorts": {f"{c}/tcp": {} for c in ports},
        }
        if "command" in container:
            config["Entrypoint"] = container["command"]
        if "args" in container:
            config["Cmd"] = container["args"]
        return config

    async def run(self, container: dict[str, Any], ports: dict[int, int] | None = None) -> aiodocker.containers.DockerContainer:
        name = unique_name(f"chart-{container['name']}")
        created = await self.docker.containers.create(self.config(container, name, ports or {}), name=name)
        self.created.append(created)
        await created.start()
        return created

    async def remove(self) -> None:
        for container in reversed(self.created):
            await container.delete(force=True)


def handshake(url: str) -> int:
    """The manager's liveness endpoint answers (its port is published and it serves)."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return response.status
    except OSError:
        return 0


async def readme_client_flow(docker: aiodocker.Docker, url: str, token: str) -> None:
    """The README's client flow with the token: create, start, a message over the link, status, delete."""
    client = await Client().connect(url, auth={"token": token})
    try:
        name = unique_name("deploy-flow")
        created = await client.call("create_container", {"image": "flow:latest", "name": name})
        assert created["status"] == "created", created
        cid = created["container_id"]
        assert (await client.call("start_container", {"container_id": cid}))["status"] == "running"
        await wait_link(client, cid, True, timeout=30)  # the link directory as the engine sees it
        await ping(client, cid)
        answer = await client.call("get_container_status", {"container_id": name})
        assert answer["state"] == "running" and answer["socket_connected"] is True, answer
        assert (await client.call("delete_container", {"container_id": cid}))["status"] == "deleted"
        assert not [c for c in await docker.containers.list(all=True) if c._container["Names"] == [f"/{name}"]]
    finally:
        await client.close()


async def test_rendered_host_mode_manager_container_serves_the_readme_client(docker: aiodocker.Docker, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    built = await ensure_manager_image(docker)
    record_timing("manager image (build or reuse)", loop.time() - started)

    instance = unique_name("chart")
    docs = render_host_mode(tmp_path / "node" / "links", instance)
    kubelet = Kubelet(docker, docs, tmp_path)
    manager = next(c for c in kubelet.pod["containers"] if c["name"] == "manager")
    assert manager["image"] == default_tag(), f"the chart's appVersion deploys {manager['image']}, the build made {built}"
    port = next(p["containerPort"] for p in manager["ports"] if p["name"] == "http")
    token_volume = kubelet.volumes["flow-manager-token"]["secret"]
    token = base64.b64decode(kubelet.secrets[token_volume["secretName"]]["data"]["token"]).decode()
    try:
        for init in kubelet.pod.get("initContainers", []):
            container = await kubelet.run(init)
            assert (await container.wait(timeout=60))["StatusCode"] == 0, await container.log(stdout=True, stderr=True)
        link_dir = Path(kubelet.volumes["flow-manager-links"]["hostPath"]["path"])
        assert link_dir.stat().st_uid == 10001, "the init container did not hand the link directory to the manager"

        host_port = free_port()
        running = await kubelet.run(manager, {port: host_port})
        url = f"http://127.0.0.1:{host_port}"

        async def status() -> int:
            state = (await running.show())["State"]
            assert state["Running"], f"the manager container exited: {await running.log(stdout=True, stderr=True)}"
            return await asyncio.to_thread(handshake, url)

        await wait_until(status, 60, what="the manager container to answer the Socket.IO handshake", until=lambda s: s == 200)

        with pytest.raises(socketio.exceptions.ConnectionError):  # it listens on 0.0.0.0: the token is required
            await Client().connect(url)

        await readme_client_flow(docker, url, token)

        # The image's HEALTHCHECK (the Socket.IO handshake from inside the container) reports healthy.
        await wait_until(
            running.show,
            60,
            what="the manager container's HEALTHCHECK to report healthy",
            until=lambda info: info["State"].get("Health", {}).get("Status") == "healthy",
            interval=1,
        )
    finally:
        await kubelet.remove()


async def test_compose_file_runs_the_manager_image(docker: aiodocker.Docker, tmp_path: Path) -> None:
    """deploy/compose.yaml as shipped (env file from the example, a real token): the init service hands
    over the link directory, the manager becomes healthy by its healthcheck and serves the client."""
    await ensure_manager_image(docker)
    compose = tool("docker-compose", "apt-get install -y docker-compose")
    shutil.copy(CHECKOUT / "deploy" / "compose.yaml", tmp_path / "compose.yaml")
    token = secrets.token_urlsafe(32)
    example = (CHECKOUT / "deploy" / "flow-manager.env.example").read_text()
    (tmp_path / "flow-manager.env").write_text(example.replace("change-me-to-a-long-random-token", token))
    project = unique_name("compose").replace("-", "")
    port = free_port()
    env = {
        **os.environ,
        "DOCKER_GID": str(os.stat(DOCKER_SOCKET).st_gid),
        "FLOW_MANAGER_LINK_DIR": str(tmp_path / "links"),
        "FLOW_MANAGER_PORT": str(port),
        "FLOW_MANAGER_INSTANCE": unique_name("compose"),
    }
    argv = [compose, "-p", project, "-f", str(tmp_path / "compose.yaml")]

    def run(*args: str) -> None:
        result = subprocess.run([*argv, *args], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr

    try:
        await asyncio.to_thread(run, "up", "-d")
        manager = await docker.containers.get(f"{project}_flow-manager_1")
        await wait_until(
            manager.show,
            90,
            what="the compose service's healthcheck to report healthy",
            until=lambda info: info["State"].get("Health", {}).get("Status") == "healthy",
            interval=1,
        )
        await readme_client_flow(docker, f"http://127.0.0.1:{port}", token)
    finally:
        await asyncio.to_thread(run, "down", "-v", "--timeout", "10")
