"""The processes the benchmark starts (the manager, echo servers) and CPU/memory readings of any process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from controller.adapters import cgroup_stats

ROOT = Path(__file__).resolve().parent.parent  # the checkout under test: the manager is imported from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A Python child process importing this checkout (not whatever `pip install -e` points at)."""

    def __init__(self, args: list[str], log_path: Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.args, self.log_path, self.port, self.extra_env = args, log_path, port, env or {}
        self.root = ROOT  # the checkout it imports (bench/tracing_cost.py may point it at an older one)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, **self.extra_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(self.root), os.environ.get("PYTHONPATH")]))}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, *self.args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        log.close()
        if self.port is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[:3]} exited early:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.args[:3]} did not listen within {timeout}s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def manager(workdir: Path, instance: str) -> Child:
    """`flow-manager serve` with its defaults, except where it listens and keeps state.

    Three limits are raised because the targets themselves exceed them; none
    changes how the manager works, only where it stops:
    --request-timeout 300 (default 60): it only decides when a request gives up
    waiting and answers system_error, and a fan-out of 100 on a busy engine can
    take close to a minute for the last container (the bench measures when
    containers run, which a timeout answer would hide);
    --max-containers 400 (default 100): targets 4 and 6 need 200;
    --client-rate-limit 0 (default 200 requests/s per client): one client's
    back-to-back pings (target 3) run faster than that, and the bench measures
    capacity, not the policy.
    """
    port = free_port()
    args = [
        "-m",
        "flow_manager.cli",
        "serve",
        "--port",
        str(port),
        "--instance",
        instance,
        "--no-build-image",
        "--socket-dir",
        str(workdir / "sockets"),
        "--state-dir",
        str(workdir / "state"),
        "--request-timeout",
        "300",
        "--max-containers",
        "400",
        "--client-rate-limit",
        "0",
    ]
    return Child(args, workdir / "manager.log", port)


@dataclass
class CpuSample:
    at: float
    seconds: dict[int, float]


def cpu_seconds(pids: list[int]) -> CpuSample:
    """user+system CPU seconds of each pid (0 for a pid that is gone)."""
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system
        except psutil.Error:
            seconds[pid] = 0.0
    return CpuSample(time.monotonic(), seconds)


def cpu_percent(before: CpuSample, after: CpuSample, pid: int) -> float:
    """Percent of one core used by `pid` between two samples."""
    elapsed = after.at - before.at
    return round((after.seconds.get(pid, 0.0) - before.seconds.get(pid, 0.0)) / elapsed * 100, 2) if elapsed else 0.0


def engine_pids() -> dict[str, int]:
    """The main Docker engine's dockerd and containerd (not private test engines with their own --host)."""
    found: dict[str, int] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
        name, cmdline = proc.info["name"], " ".join(proc.info["cmdline"] or [])
        if name in ("dockerd", "containerd") and "--host" not in cmdline and "/tmp/" not in cmdline:
            if name not in found or proc.info["create_time"] < psutil.Process(found[name]).create_time():
                found[name] = proc.info["pid"]
    return found


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, from /proc."""
    process = psutil.Process(pid)
    peak = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    return process.memory_info().rss, peak


def container_cpu_seconds(docker_ids: list[str]) -> float:
    """CPU seconds used so far by these containers together, read from their cgroups as the manager reads
    them (0 for one whose cgroup is not visible)."""
    readings = (cgroup_stats.sample(docker_id, 0) for docker_id in docker_ids)
    return sum(reading["cpu_ns"] for reading in readings if reading is not None) / 1e9
