"""What the run ran on: machine, versions, load. Recorded in the JSON beside every figure."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import aiodocker

PACKAGES = (
    "python-socketio",
    "python-engineio",
    "uvicorn",
    "websockets",
    "uvloop",
    "aiodocker",
    "aiohttp",
    "pydantic",
    "tenacity",
    "psutil",
    "matplotlib",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def cpu_calibration_us(rounds: int = 5) -> float:
    """Best of `rounds` timings of sum(range(10000)): how fast this Python runs right now.

    Figures from two runs are comparable only when this is similar (a shared VM
    can be several times slower at one moment than at another).
    """
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(20):
            sum(range(10000))
        best = min(best, (time.perf_counter() - started) / 20)
    return round(best * 1e6, 1)


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except OSError:
        return None


async def describe(docker: aiodocker.Docker, root: Path) -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        engine = await docker.version()
        versions["docker_engine"] = engine.get("Version")
        versions["docker_api"] = engine.get("ApiVersion")
    except Exception as exc:  # recorded, not fatal: the phases will fail loudly anyway
        versions["docker_engine"] = f"unavailable: {exc!r}"
    machine = {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "loadavg_start": loadavg(),
        "cpu_calibration_us": cpu_calibration_us(),
    }
    return {"machine": machine, "versions": versions, "commit": _git_commit(root)}
