"""A real Prometheus server (Debian's `prometheus` package) that scrapes one manager every second.

Its own configuration and data directory in a temporary directory, a free port on loopback; queried over
its HTTP API (`/api/v1/query`). A missing binary fails the test that needs it, with the package to install.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import free_port

PACKAGE = "prometheus"  # Debian's package: /usr/bin/prometheus


class Prometheus:
    def __init__(self, target: str, job: str = "flow-manager") -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(f"the prometheus binary is missing: install Debian's package (apt-get install -y {PACKAGE})")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="fm-prom-"))
        self.port = free_port()
        self.job = job
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.dir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout} s:\n{self.log()}")

    async def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query's result vector (each item: {"metric": labels, "value": [time, "text"]})."""
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/api/v1/query", params={"query": expression}) as response:
                body = await response.json()
        assert body.get("status") == "success", body
        return body["data"]["result"]

    async def value(self, expression: str) -> float | None:
        """The single value of an instant query, None when it has no result yet."""
        result = await self.query(expression)
        return float(result[0]["value"][1]) if result else None

    async def targets(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/api/v1/targets") as response:
                return (await response.json())["data"]["activeTargets"]

    def log(self) -> str:
        path = self.dir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
