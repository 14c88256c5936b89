"""Build an image of the manager itself with no image registry: `flow-manager build-image --manager`.

The flow image's Debian base (debootstrap, see flow_manager/image.py) has Debian's python3 3.11 but no
pip and no ensurepip, so nothing is installed inside the build. Instead the host's pip (same CPython
minor version: checked) installs, with `--target`, the wheels the manager needs into a plain site
directory, which an ordinary `FROM <base>` build adds as a layer:

* the dependency layer `flow-manager-deps:<hash>`: the runtime dependencies of pyproject.toml as binary
  wheels for CPython 3.11 / manylinux x86_64 (compiled ones such as pydantic-core, uvloop and httptools
  match the base's Python because the ABI is fixed per minor version), plus the non-root user. Tagged
  by a hash of its recipe (base tag, dependency list, platform, Dockerfile): rebuilt only when these
  change (or with --force), so a code change does not reinstall 45 MB of dependencies;
* the manager layer on top: the wheel of the current checkout, installed without dependencies, plus
  the entry point, environment, ports, health check and labels. Its revision is a hash of the
  dependency layer's tag, the package sources and pyproject.toml: when nothing changed, nothing is
  built.

The Dockerfile at the root of the checkout does the same steps from python:3.11-slim-bookworm for
users with a registry; keep USER, paths, ENV, ENTRYPOINT, HEALTHCHECK and labels equal in both
(tests/deploy/test_manager_image.py compares them).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import shutil
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

import aiodocker

import flow_manager
from flow_manager.image import ImageBuildError, _build, _run, base_tag, build_base, image_labels

log = logging.getLogger("flow_manager.manager_image")

REVISION_LABEL = "io.kawaflow.manager-image.revision"
USER_ID = 10001  # the manager's user and group in the image; add the Docker socket's group at run time
SITE = "/opt/flow-manager/site"
STATE_DIR = "/var/lib/flow-manager"
SOCKET_DIR = "/run/flow-manager/sockets"
PYTHON = (3, 11)  # Debian bookworm's python3, the base's interpreter
# Binary wheels only, for the base's interpreter and libc (bookworm: glibc 2.36).
PLATFORM_ARGS = (
    "--only-binary=:all:",
    "--implementation",
    "cp",
    "--python-version",
    "3.11",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_36_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "linux_x86_64",
)

# The manager's own liveness endpoint (/healthz, through `flow-manager healthcheck`, which finds the port in
# FLOW_MANAGER_PORT); the Socket.IO handshake would fail with long-polling off, the default.
HEALTH_COMMAND = '["python3", "-m", "flow_manager", "healthcheck"]'

DEPS_DOCKERFILE = f"""\
FROM {{base}}
RUN groupadd --system --gid {USER_ID} flow-manager \\
 && useradd --system --uid {USER_ID} --gid {USER_ID} --home-dir {STATE_DIR} --no-create-home \\
      --shell /usr/sbin/nologin flow-manager \\
 && mkdir -p {STATE_DIR} {SOCKET_DIR} && chown {USER_ID}:{USER_ID} {STATE_DIR} {SOCKET_DIR}
ADD site.tar {SITE}/
"""

# Shared with the Dockerfile at the root of the checkout: everything a running container sees.
RUNTIME_INSTRUCTIONS = f"""\
ENV PYTHONPATH={SITE} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    FLOW_MANAGER_HOST=0.0.0.0 FLOW_MANAGER_PORT=8000 \\
    FLOW_MANAGER_STATE_DIR={STATE_DIR} FLOW_MANAGER_SOCKET_DIR={SOCKET_DIR} \\
    FLOW_MANAGER_BUILD_IMAGE=false DOCKER_HOST=unix:///var/run/docker.sock
USER {USER_ID}:{USER_ID}
WORKDIR {STATE_DIR}
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \\
  CMD {HEALTH_COMMAND}
ENTRYPOINT ["python3", "-m", "flow_manager"]
CMD ["serve"]
"""

MANAGER_DOCKERFILE = """\
FROM {deps}
ADD app.tar {site}/
{runtime}LABEL org.opencontainers.image.title="flow-manager" \\
      org.opencontainers.image.version="{version}" \\
      {label}="{revision}"
"""


def default_tag() -> str:
    return f"flow-manager:{flow_manager.__version__}"


def project_root() -> Path:
    """The checkout the running code comes from: the image holds the wheel of exactly this source."""
    root = Path(flow_manager.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or tomllib.loads(pyproject.read_text()).get("project", {}).get("name") != "flow-manager":
        raise ImageBuildError(
            f"build-image --manager builds the wheel of a source checkout, and {root} is not one "
            "(run it from a clone: pip install -e . or python -m flow_manager from the checkout)"
        )
    return root


def _pyproject(root: Path) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())


def source_files(root: Path) -> list[Path]:
    """What the wheel is built from: pyproject.toml, README.md and every file of the listed packages."""
    found = _pyproject(root)["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern for pattern in found if "*" not in pattern]  # the top-level packages; .* adds their subpackages
    files = [root / "pyproject.toml", root / "README.md"]
    for package in packages:
        files += [p for p in sorted((root / package).rglob("*")) if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return files


def deps_tag(root: Path) -> str:
    digest = hashlib.sha256(base_tag().encode())
    digest.update(DEPS_DOCKERFILE.encode())
    digest.update("\0".join(PLATFORM_ARGS).encode())
    for requirement in _pyproject(root)["project"]["dependencies"]:
        digest.update(requirement.encode() + b"\0")
    return f"flow-manager-deps:{digest.hexdigest()[:12]}"


def manager_revision(root: Path, deps: str) -> str:
    digest = hashlib.sha256(deps.encode())
    digest.update(MANAGER_DOCKERFILE.encode() + RUNTIME_INSTRUCTIONS.encode())
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _check_python() -> None:
    if sys.version_info[:2] != PYTHON:
        raise ImageBuildError(
            f"build-image --manager installs wheels for the base's Python {PYTHON[0]}.{PYTHON[1]} with "
            f"this interpreter's pip; run it with Python {PYTHON[0]}.{PYTHON[1]} "
            f"(this is {sys.version_info[0]}.{sys.version_info[1]})"
        )


async def _pip(*args: str) -> None:
    await _run(sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args)


def _context(files: dict[str, bytes | Path]) -> io.BytesIO:
    """A build context tar holding `files` (content, or a file on disk to add as is)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            if isinstance(content, Path):
                tar.add(content, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


async def _site_tar(site: Path, out: Path) -> None:
    """The installed tree as root-owned, world-readable files (the manager's user only reads them)."""
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with the host's shebang: unusable there
    await _run("tar", "-C", str(site), "--owner=0", "--group=0", "--numeric-owner", "--mode=u+rw,go+rX,go-w", "-cf", str(out), ".")


async def build_deps(docker: aiodocker.Docker, root: Path, tag: str) -> None:
    base = base_tag()
    if await image_labels(docker, base) is None:
        await build_base(docker, base)
    with tempfile.TemporaryDirectory(prefix="flow-manager-deps-") as tmp:
        work = Path(tmp)
        log.info("installing the manager's dependencies into a site directory (pip, binary wheels)")
        await _pip("install", "--quiet", "--no-compile", "--target", str(work / "site"), *PLATFORM_ARGS, *_pyproject(root)["project"]["dependencies"])
        await _site_tar(work / "site", work / "site.tar")
        context = await asyncio.to_thread(_context, {"Dockerfile": DEPS_DOCKERFILE.format(base=base).encode(), "site.tar": work / "site.tar"})
        await _build(docker, context, tag)


async def build_manager_layer(docker: aiodocker.Docker, root: Path, deps: str, tag: str, revision: str) -> None:
    with tempfile.TemporaryDirectory(prefix="flow-manager-app-") as tmp:
        work = Path(tmp)
        source = work / "source"  # a copy: building in the checkout would leave build/ and *.egg-info there
        for path in source_files(root):
            target = source / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        await _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "wheel"), str(source))
        wheels = sorted((work / "wheel").glob("flow_manager-*.whl"))
        if len(wheels) != 1:
            raise ImageBuildError(f"expected one wheel of the checkout, got {wheels}")
        await _pip("install", "--quiet", "--no-deps", "--no-compile", "--target", str(work / "app"), str(wheels[0]))
        await _site_tar(work / "app", work / "app.tar")
        dockerfile = MANAGER_DOCKERFILE.format(
            deps=deps, site=SITE, runtime=RUNTIME_INSTRUCTIONS, version=flow_manager.__version__, label=REVISION_LABEL, revision=revision
        )
        context = await asyncio.to_thread(_context, {"Dockerfile": dockerfile.encode(), "app.tar": work / "app.tar"})
        await _build(docker, context, tag)


async def ensure_manager_image(docker: aiodocker.Docker, tag: str | None = None, *, force: bool = False) -> str:
    """Make sure `tag` holds the manager of this checkout; returns what was done."""
    _check_python()
    tag = tag or default_tag()
    root = project_root()
    deps = deps_tag(root)
    revision = manager_revision(root, deps)
    labels = await image_labels(docker, tag)
    if not force and labels is not None and labels.get(REVISION_LABEL) == revision:
        return f"{tag} is up to date (revision {revision})"
    if force or await image_labels(docker, deps) is None:
        await build_deps(docker, root, deps)
    await build_manager_layer(docker, root, deps, tag, revision)
    return f"built {tag} (revision {revision}, dependencies {deps})"
