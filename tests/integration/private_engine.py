"""A private Docker engine the tests may kill -9 and restart without touching the main one.

It runs in a network namespace of its own (`unshare --net`): a second daemon
started with `--bridge none` on the host's namespace would delete the main
engine's docker0. Its containers have no network, which the flow runtime does
not need (its link is a Unix socket on a bind mount).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PrivateEngine:
    def __init__(self) -> None:
        # Short path: containerd's sockets live under exec-root and Unix socket paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="fmd-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "docker.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return b"OK" in s.recv(4096)
        except OSError:
            return False

    def start(self, attempts: int = 4, timeout: float = 20.0) -> float:
        """Start dockerd and wait until it answers; returns the moment it did (time.time())."""
        for _ in range(attempts):
            self.pidfile.unlink(missing_ok=True)  # left behind by kill -9
            log = open(self.dir / "dockerd.log", "ab")
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "dockerd",
                    "--host",
                    self.url,
                    "--data-root",
                    str(self.dir / "data"),
                    "--exec-root",
                    str(self.dir / "exec"),
                    "--pidfile",
                    str(self.pidfile),
                    "--bridge",
                    "none",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.answers():
                    return time.time()
                time.sleep(0.1)
            # Right after a kill -9 the old containerd may still be exiting ("timeout waiting for containerd").
            self.kill(signal.SIGKILL)
            time.sleep(1)
        raise RuntimeError(f"private dockerd did not start:\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def docker(self, *args: str, stdin: bytes | None = None) -> str:
        return subprocess.run(["docker", "-H", self.url, *args], input=stdin, capture_output=True, check=True, timeout=120).stdout.decode()

    def load_image(self, tag: str) -> None:
        saved = subprocess.run(["docker", "save", tag], capture_output=True, check=True, timeout=120).stdout
        self.docker("load", "-q", stdin=saved)

    def log(self) -> str:
        path = self.dir / "dockerd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        self.kill(signal.SIGTERM)
        subprocess.run(["umount", str(self.dir / "data")], capture_output=True)
        # containerd-shims of containers the last kill -9 left behind
        subprocess.run(["pkill", "-9", "-f", str(self.dir / "exec")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():  # a busy mount: leave it rather than fail the run
            os.system(f"umount -l {self.dir / 'data'} 2>/dev/null; rm -rf {self.dir}")
