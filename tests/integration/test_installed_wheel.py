"""The installed distribution is the product: the wheel built from this checkout, installed into a fresh
virtual environment outside the checkout, serves the README's client example.

The rest of the suite imports the checkout's source, so a file the code reads from its package directory
but the wheel leaves out (the runtime's example code, say) would pass every other test and still break a
user's `pip install . && flow-manager serve`. This test builds and installs the wheel once per test run,
starts that installation's `flow-manager serve` from a directory that is not the checkout, with image
building on (so the runtime layer really is prepared from the installed package), and runs the code block
under "## A client" in README.md, taken from the README text itself, against it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import aiodocker
import pytest

from tests.integration.harness import RUN_ID, free_port, record_timing, unique_name

CHECKOUT = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:8000"
README_IMAGE = '"flow:latest"'
README_NAME = '"demo"'
# What a build of the checkout never needs: copying them would only cost time (or leak stale build output).
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", "node_modules", ".pytest_cache", ".venv", "results", ".timings.jsonl"
)

# Runs the README's example unchanged and records what it got: every answer to a `call` and every event
# that the example itself does not handle (the response events), as JSON lines.
RECORDER = """\
import json, sys
import socketio

_log = open(sys.argv[1], "a")

def _write(entry):
    _log.write(json.dumps(entry) + "\\n")
    _log.flush()

_call = socketio.AsyncClient.call
async def call(self, event, data=None, *args, **kwargs):
    answer = await _call(self, event, data, *args, **kwargs)
    _write({"kind": "answer", "request": event, "answer": answer})
    return answer
socketio.AsyncClient.call = call

_init = socketio.AsyncClient.__init__
def init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    async def record(event, data=None):
        _write({"kind": "event", "event": event, "data": data})
    self.on("*", record)
socketio.AsyncClient.__init__ = init

code = open(sys.argv[2]).read()
exec(compile(code, "README.md: A client", "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Installed:
    """A fresh venv holding only the wheel built from the checkout and its dependencies."""

    venv: Path
    elsewhere: Path  # a working directory that is not the checkout
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def flow_manager(self) -> str:
        return str(self.venv / "bin" / "flow-manager")


def project_version() -> str:
    return tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["version"]


def readme_client_example() -> str:
    """The first Python code block under "## A client" in README.md."""
    readme = (CHECKOUT / "README.md").read_text()
    section = readme.split("\n## A client\n", 1)
    assert len(section) == 2, 'README.md has no "## A client" section'
    match = re.search(r"```python\n(.*?)```", section[1].split("\n## ", 1)[0], re.S)
    assert match, 'README.md\'s "## A client" section has no python code block'
    return match.group(1)


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Builds the sdist and the wheel from a copy of the checkout (building in place would leave build/ and
    *.egg-info in it, and setuptools would reuse a stale build/ next time) and installs the wheel, with its
    dependencies, into a new venv that does not see the system's site-packages."""
    root = tmp_path_factory.mktemp("wheel")
    began = time.monotonic()
    source, wheels, venv, elsewhere = root / "source", root / "wheels", root / "venv", root / "elsewhere"
    shutil.copytree(CHECKOUT, source, ignore=COPY_IGNORE, symlinks=True)
    elsewhere.mkdir()
    # `python -m build` makes the sdist, then the wheel from the sdist: a file missing from either fails here.
    _run([sys.executable, "-m", "build", "--outdir", str(wheels), str(source)], cwd=elsewhere)
    [wheel] = wheels.glob("flow_manager-*.whl")
    built = time.monotonic()
    # No pip inside (ensurepip alone takes seconds): this pip installs into it. No byte-compiling either.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=elsewhere)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile", str(wheel)], cwd=elsewhere, env=env)
    record_timing("wheel_build", built - began)
    record_timing("wheel_venv_install", time.monotonic() - built)
    shutil.rmtree(source)
    yield Installed(venv, elsewhere, env)


def test_installed_modules_are_the_wheels(installed: Installed) -> None:
    """What the venv imports is its own installation, never the checkout's source."""
    done = _run(
        [
            installed.python,
            "-c",
            "import api, controller, flow_manager, flow_runtime, store\n"
            "for m in (api, controller, flow_manager, flow_runtime, store): print(m.__file__)",
        ],
        cwd=installed.elsewhere,
        env=installed.env,
    )
    files = done.stdout.split()
    assert len(files) == 5
    for file in files:
        assert Path(file).is_relative_to(installed.venv), files


def test_version(installed: Installed) -> None:
    version = project_version()
    for argv in ([installed.flow_manager, "--version"], [installed.python, "-m", "flow_manager", "--version"]):
        done = _run(argv, cwd=installed.elsewhere, env=installed.env)
        assert done.stdout.strip() == f"flow-manager {version}", (argv, done.stdout, done.stderr)


async def _listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the installed flow-manager serve exited {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"the installed flow-manager serve did not listen within {timeout}s:\n{log.read_text(errors='replace')[-4000:]}")


async def test_readme_client_example_against_the_installed_wheel(installed: Installed, docker: aiodocker.Docker, tmp_path: Path) -> None:
    example = readme_client_example()
    for text in (README_URL, README_IMAGE, README_NAME):  # the test must break when the example changes shape
        assert text in example, f"README's client example no longer contains {text}"
    port, image, name = free_port(), f"flow-wheeltest:{RUN_ID}", unique_name("wheel")
    example = example.replace(README_URL, f"http://127.0.0.1:{port}").replace(README_IMAGE, json.dumps(image))
    example = example.replace(README_NAME, json.dumps(name))
    (tmp_path / "example.py").write_text(example)
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / f"server-{port}.log"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [
                installed.flow_manager,
                "serve",
                "--port",
                str(port),
                "--flow-image",
                image,
                "--socket-dir",
                str(tmp_path / "sockets"),
                "--state-dir",
                str(tmp_path / "state"),
                "--instance",
                f"wheeltest-{RUN_ID}-{port}",
                "--build-image",
            ],
            cwd=installed.elsewhere,
            env=installed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        began = time.monotonic()
        await _listening(server, port, log, timeout=180)
        record_timing("wheel_serve_listening", time.monotonic() - began)
        proc = await asyncio.create_subprocess_exec(
            installed.python,
            str(tmp_path / "recorder.py"),
            str(tmp_path / "recorded.jsonl"),
            str(tmp_path / "example.py"),
            cwd=installed.elsewhere,
            env=installed.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, f"the README example failed:\n{stdout.decode()}\n{stderr.decode()}"
        recorded = [json.loads(line) for line in (tmp_path / "recorded.jsonl").read_text().splitlines()]
        answers = {e["request"]: e["answer"] for e in recorded if e["kind"] == "answer"}
        events = {e["event"]: e["data"] for e in recorded if e["kind"] == "event"}
        cid = answers["create_container"]["container_id"]
        assert answers["create_container"]["name"] == name and answers["create_container"]["image"] == image
        assert answers["start_container"] == {"container_id": cid, "status": "running"}
        assert events["container_started"] == answers["start_container"]
        status = answers["get_container_status"]
        assert status["container_id"] == cid and status["state"] == "running", status
        assert answers["delete_container"] == {"container_id": cid, "status": "deleted"}
        assert events["container_deleted"] == answers["delete_container"]
        # What the example prints: the start answer, the status, and the status_changed events it handles.
        printed = stdout.decode().splitlines()
        assert str(answers["start_container"]) in printed and str(status) in printed, printed
        assert any(line.startswith("status {") and "'new_state': 'running'" in line for line in printed), printed
        assert await docker.containers.list(all=True, filters={"name": [name]}) == []
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(server.wait, 15)
        except subprocess.TimeoutExpired:
            server.kill()
            await asyncio.to_thread(server.wait)
        for container in await docker.containers.list(all=True, filters={"name": [name]}):
            await container.delete(force=True)
        try:
            await docker.images.delete(image)  # only the tag when flow:latest is the same image
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise
