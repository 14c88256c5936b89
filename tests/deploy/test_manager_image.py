"""The manager image's two recipes stay equivalent, and its reuse key follows the sources.

The offline builder (flow_manager/manager_image.py) is what CI builds and runs
(tests/integration/test_deployment.py); the Dockerfile, for users with a registry, cannot be built here
(python:3.11-slim-bookworm cannot be pulled), so what a container sees is checked to be the same text.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import yaml

import flow_manager
from flow_manager import manager_image
from tests.deploy.tools import CHART, CHECKOUT

DOCKERFILE = (CHECKOUT / "Dockerfile").read_text()


def test_dockerfile_runtime_block_is_the_builders() -> None:
    block = re.search(r"# RUNTIME begin\n(.*)# RUNTIME end\n", DOCKERFILE, re.S)
    assert block and block.group(1) == manager_image.RUNTIME_INSTRUCTIONS


def test_dockerfile_creates_the_same_user_and_paths() -> None:
    run = manager_image.DEPS_DOCKERFILE.split("\n", 1)[1].split("ADD site.tar")[0]
    assert run in DOCKERFILE
    assert f"COPY --from=wheel /site {manager_image.SITE}/" in DOCKERFILE
    assert 'org.opencontainers.image.title="flow-manager"' in DOCKERFILE
    assert "org.opencontainers.image.version" in DOCKERFILE and "org.opencontainers.image.version" in manager_image.MANAGER_DOCKERFILE


def test_chart_app_version_is_the_built_version() -> None:
    """The chart deploys flow-manager:<appVersion>; build-image --manager tags flow-manager:<version>."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"] == flow_manager.__version__
    assert manager_image.default_tag() == f"flow-manager:{chart['appVersion']}"
    assert re.search(r"^ARG VERSION=(\S+)$", DOCKERFILE, re.M).group(1) == project["version"]


def test_revision_follows_sources_and_dependencies(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    for path in manager_image.source_files(CHECKOUT):
        target = root / path.relative_to(CHECKOUT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    deps = manager_image.deps_tag(root)
    first = manager_image.manager_revision(root, deps)
    assert manager_image.manager_revision(root, deps) == first  # nothing changed: the image is reused
    (root / "api" / "__pycache__").mkdir(exist_ok=True)
    (root / "api" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"noise")
    assert manager_image.manager_revision(root, deps) == first  # bytecode is not source
    handlers = root / "flow_manager" / "cli.py"
    handlers.write_text(handlers.read_text() + "\n# changed\n")
    assert manager_image.manager_revision(root, deps) != first
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"tenacity>=8.2"', '"tenacity>=9"'))
    assert manager_image.deps_tag(root) != deps  # a new dependency set rebuilds the dependency layer


def test_project_root_refuses_an_installed_copy(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "site-packages" / "flow_manager"
    fake.mkdir(parents=True)
    monkeypatch.setattr(flow_manager, "__file__", str(fake / "__init__.py"))
    try:
        manager_image.project_root()
    except manager_image.ImageBuildError as exc:
        assert "source checkout" in str(exc)
    else:
        raise AssertionError("an installed copy has no checkout to build the wheel from")
