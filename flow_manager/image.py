"""Build the reference flow image with no image registry.

The base layer is a Debian rootfs made by debootstrap and turned into an image
with a ``FROM scratch`` / ``ADD rootfs.tar`` build, so only the Docker API is
needed (no docker CLI). It is tagged by a hash of its recipe and reused. The
thin runtime layer on top is tagged with a content hash of the runtime files:
when nothing changed, nothing is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import aiodocker

import flow_runtime
from flow_runtime.protocol import LINK_ENV, LINK_PATH

log = logging.getLogger("flow_manager.image")

REVISION_LABEL = "io.kawaflow.flow-image.revision"
SUITE = "bookworm"
BASE_PACKAGES = "python3"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

RUNTIME_DOCKERFILE = f"""\
FROM {{base}}
COPY flow_runtime /opt/flow/flow_runtime
ADD code.tar /
ENV PYTHONPATH=/opt/flow PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    FLOW_CODE_DIR=/opt/flow/code {LINK_ENV}={LINK_PATH}
WORKDIR /opt/flow/code
STOPSIGNAL SIGTERM
LABEL {{label}}="{{revision}}"
CMD ["python3", "-m", "flow_runtime"]
"""


class ImageBuildError(RuntimeError):
    pass


def debian_mirror() -> str:
    """The mirror this host's apt already uses, so offline-ish hosts keep working."""
    if os.environ.get("FLOW_MANAGER_DEBIAN_MIRROR"):
        return os.environ["FLOW_MANAGER_DEBIAN_MIRROR"]
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if source.exists():
            text = source.read_text()
            match = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE, text, re.M)
            if match:
                return match.group(1)
    return DEFAULT_MIRROR


def base_tag() -> str:
    recipe = f"debootstrap --variant=minbase --include={BASE_PACKAGES} {SUITE}"
    return f"flow-rootfs:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def example_code_tar(files: dict[str, bytes]) -> bytes:
    """The example code in the layout code updates use: /opt/flow/revisions/image/ and the symlink
    /opt/flow/code pointing at it (ADD extracts a local tar, symlink included). Deterministic, so the
    runtime revision only changes when the code does."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        directory = tarfile.TarInfo("opt/flow/revisions/image")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(f"opt/flow/revisions/image/{name}")
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("opt/flow/code")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, "revisions/image", 0o777
        tar.addfile(link)
    return buffer.getvalue()


def runtime_files() -> dict[str, bytes]:
    """Files of the runtime layer, keyed by their path in the build context."""
    package = Path(flow_runtime.__file__).parent
    files = {f"flow_runtime/{p.name}": p.read_bytes() for p in sorted(package.glob("*.py"))}
    example = sorted((package / "example").glob("*.py"))  # package data: pyproject.toml ships it
    if not example:  # otherwise the image would start without any code and the user would not know why
        raise ImageBuildError(f"{package / 'example'} has no example code: this installation of flow-manager is incomplete (reinstall it)")
    files["code.tar"] = example_code_tar({p.name: p.read_bytes() for p in example})
    return files


def runtime_revision(base: str) -> str:
    digest = hashlib.sha256(base.encode())
    digest.update(RUNTIME_DOCKERFILE.encode())
    for path, content in sorted(runtime_files().items()):
        digest.update(path.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


async def image_labels(docker: aiodocker.Docker, tag: str) -> dict[str, str] | None:
    try:
        info = await docker.images.inspect(tag)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise
    return (info.get("Config") or {}).get("Labels") or {}


async def _build(docker: aiodocker.Docker, context: io.BufferedIOBase, tag: str) -> None:
    output = await docker.images.build(fileobj=context, encoding="application/x-tar", tag=tag, rm=True, forcerm=True)
    for line in output if isinstance(output, list) else [output]:
        if isinstance(line, dict) and line.get("error"):
            raise ImageBuildError(f"building {tag} failed: {line['error']}")


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        tail = out.decode(errors="replace")[-2000:]
        raise ImageBuildError(f"{argv[0]} failed with exit code {proc.returncode}:\n{tail}")


async def build_base(docker: aiodocker.Docker, tag: str) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is needed to build the base image: apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root to build the base image")
    workdir = Path(tempfile.mkdtemp(prefix="flow-rootfs-", dir=os.environ.get("FLOW_MANAGER_BUILD_DIR", "/var/tmp")))
    try:
        rootfs, context = workdir / "rootfs", workdir / "context"
        context.mkdir()
        mirror = debian_mirror()
        log.info("debootstrap %s from %s (about a minute)", SUITE, mirror)
        await _run("debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(rootfs), mirror)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
        await _run("tar", "-C", str(rootfs), "-cf", str(context / "rootfs.tar"), ".")
        (context / "Dockerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
        await _run("tar", "-C", str(context), "-cf", str(workdir / "context.tar"), "Dockerfile", "rootfs.tar")
        with open(workdir / "context.tar", "rb") as fh:
            await _build(docker, fh, tag)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def ensure_flow_image(docker: aiodocker.Docker, tag: str = "flow:latest", *, force: bool = False) -> str:
    """Make sure `tag` is the current reference image; returns what was done."""
    base = base_tag()
    revision = runtime_revision(base)
    labels = await image_labels(docker, tag)
    if not force and labels is not None and labels.get(REVISION_LABEL) == revision:
        return f"{tag} is up to date (revision {revision})"
    if force or await image_labels(docker, base) is None:
        await build_base(docker, base)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        files = {"Dockerfile": RUNTIME_DOCKERFILE.format(base=base, label=REVISION_LABEL, revision=revision).encode()}
        files.update(runtime_files())
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    context.seek(0)
    await _build(docker, context, tag)
    return f"built {tag} (revision {revision})"
