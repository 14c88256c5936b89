"""deploy/compose.yaml and deploy/flow-manager.service, checked with the tools that read them:
`docker-compose config` (Debian's docker-compose 1.29) and `systemd-analyze verify`. Running the compose
file for real is in tests/integration/test_deployment.py (it needs the engine and the manager image).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import CHECKOUT, tool

DEPLOY = CHECKOUT / "deploy"
UNIT = DEPLOY / "flow-manager.service"
COMPOSE_HINT = "apt-get install -y docker-compose (Debian's package; .ci/run installs it)"
SYSTEMD_HINT = "systemd-analyze comes with systemd: apt-get install -y systemd"


def compose_config(tmp_path: Path, **env: str) -> dict[str, Any]:
    """`docker-compose config` of the shipped file, with the env file made from the shipped example."""
    shutil.copy(DEPLOY / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copy(DEPLOY / "flow-manager.env.example", tmp_path / "flow-manager.env")
    result = subprocess.run(
        [tool("docker-compose", COMPOSE_HINT), "-f", str(tmp_path / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_hardened(tmp_path: Path) -> None:
    config = compose_config(tmp_path, DOCKER_GID="105", FLOW_MANAGER_LINK_DIR="/srv/links")
    manager = config["services"]["flow-manager"]
    assert manager["image"] == "flow-manager:0.1.0"
    assert manager["ports"] == ["127.0.0.1:8000:8000/tcp"]  # loopback of the host only
    assert manager["group_add"] == ["105"]
    assert manager["read_only"] is True and manager["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in manager["security_opt"]
    assert manager["environment"]["FLOW_MANAGER_TOKEN"] == "change-me-to-a-long-random-token"  # from the env file
    assert manager["environment"]["FLOW_MANAGER_SOCKET_HOST_DIR"] == "/srv/links"
    volumes = {v.split(":")[1]: v.split(":")[0] for v in manager["volumes"]}  # docker-compose 1.29: "source:target:mode"
    assert volumes["/run/flow-manager/sockets"] == "/srv/links"  # the same path the engine is told
    assert volumes["/var/run/docker.sock"] == "/var/run/docker.sock"
    assert volumes["/var/lib/flow-manager"] == "state" and "state" in config["volumes"]
    assert manager["healthcheck"]["test"] == ["CMD", "python3", "-m", "flow_manager", "healthcheck"]  # GET /healthz
    assert manager["depends_on"]["link-dir-owner"]["condition"] == "service_completed_successfully"
    owner = config["services"]["link-dir-owner"]
    assert owner["cap_add"] == ["CHOWN"] and owner["cap_drop"] == ["ALL"]


def test_compose_config_can_fail(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "flow-manager.env.example", tmp_path / "flow-manager.env")
    broken = (DEPLOY / "compose.yaml").read_text().replace("read_only: true", "read_only: sometimes", 1)
    (tmp_path / "compose.yaml").write_text(broken)
    result = subprocess.run([tool("docker-compose", COMPOSE_HINT), "-f", str(tmp_path / "compose.yaml"), "config"], capture_output=True, text=True)
    assert result.returncode != 0 and "read_only" in result.stderr


def verify_unit(text: str, tmp_path: Path) -> str:
    """systemd-analyze verify's complaints (empty when there are none). It also checks that ExecStart is
    executable: the unit's /opt/flow-manager/bin/flow-manager is pointed at this environment's own
    flow-manager script (installed by `pip install`), nothing else is changed."""
    script = shutil.which("flow-manager")
    assert script, "the flow-manager command is not installed: pip install '.[test]'"
    unit = tmp_path / "flow-manager.service"
    unit.write_text(text.replace("/opt/flow-manager/bin/flow-manager", script))
    result = subprocess.run([tool("systemd-analyze", SYSTEMD_HINT), "verify", str(unit)], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f"\nexit {result.returncode}")


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "ExecStart=/opt/flow-manager/bin/flow-manager serve" in text
    assert verify_unit(text, tmp_path) == ""
    for directive in (
        "User=flow-manager",
        "ProtectSystem=strict",
        "StateDirectory=flow-manager",
        "Restart=on-failure",
        "EnvironmentFile=/etc/flow-manager/flow-manager.env",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RuntimeDirectoryPreserve=yes",
        "FLOW_MANAGER_BUILD_IMAGE=false",
    ):
        assert directive in text, directive


def test_systemd_verify_can_fail(tmp_path: Path) -> None:
    mangled = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict").replace("RestartSec=5", "RestartSec=five")
    complaints = verify_unit(mangled, tmp_path)
    assert "ProtectSystm" in complaints and "five" in complaints
