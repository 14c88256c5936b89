"""Test harness: the real `flow-manager serve` process and real Socket.IO clients."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import socketio

RUN_ID = uuid.uuid4().hex[:6]
TIMINGS = Path(__file__).resolve().parents[2] / ".timings.jsonl"  # convergence times quoted in the README


def record_timing(name: str, seconds: float) -> None:
    """Append a measured convergence time (the README's operations table comes from these)."""
    with TIMINGS.open("a") as out:
        out.write(json.dumps({"name": name, "seconds": round(seconds, 3), "at": time.time()}) + "\n")


def unique_name(prefix: str = "t") -> str:
    return f"fmtest-{RUN_ID}-{prefix}-{uuid.uuid4().hex[:6]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`flow-manager serve` in its own process, so tests can kill it like a user would."""

    def __init__(self, workdir: Path, *extra: str, docker_host: str | None = None,
                 instance: str | None = None) -> None:
        self.port = free_port()
        self.instance = instance or f"test-{RUN_ID}-{self.port}"
        self.workdir = workdir
        self.socket_dir = str(workdir / "sockets")
        self.log_path = workdir / f"server-{self.port}.log"
        self.args = ["--port", str(self.port), "--socket-dir", self.socket_dir, "--no-build-image",
                     "--state-dir", str(workdir / "state"), "--instance", self.instance,
                     "--status-interval", "1", "--restart-backoff-initial", "0.5", "--restart-backoff-max", "2",
                     "--resync-period", "5", "--send-timeout", "1", "--log-level", "info",
                     "--orphan-grace", "3", "--link-ping-interval", "0.5", "--link-ping-timeout", "3",
                     "--code-roots", str(workdir.parent),  # pytest's tmp_path directories hold the tests' code
                     *extra]
        self.env = {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "flow_manager.cli", "serve", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not listen within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""


class Client:
    """A python-socketio client that records every server-initiated event."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=True)
        self.events: list[tuple[str, Any]] = []
        # (event, container_id or None) -> payloads: lookups stay cheap while a container floods
        self._index: dict[tuple[str, str | None], list[Any]] = {}
        self._changed = asyncio.Event()
        self.sio.on("*", self._record)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))
        self._index.setdefault((event, None), []).append(data)
        if isinstance(data, dict) and isinstance(data.get("container_id"), str):
            self._index.setdefault((event, data["container_id"]), []).append(data)
        self._changed.set()

    async def connect(self, url: str, **kwargs: Any) -> "Client":
        await self.sio.connect(url, transports=["websocket"], wait_timeout=10, **kwargs)
        return self

    async def call(self, event: str, data: Any = None, timeout: float = 90) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    def of(self, event: str, container_id: str | None = None,
           where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [d for d in self._index.get((event, container_id), ()) if where(d)]

    async def wait_for(self, event: str, container_id: str | None = None,
                       where: Callable[[Any], bool] = lambda _: True, timeout: float = 30, count: int = 1) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        candidates = self._index.setdefault((event, container_id), [])
        checked, found = 0, []
        while True:
            found.extend(d for d in candidates[checked:] if where(d))
            checked = len(candidates)
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {event} ({container_id}) within {timeout}s; saw "
                                     f"{[(e, d) for e, d in self.events[-15:]]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def quiet(self, event: str, container_id: str | None, seconds: float, why: str,
                    where: Callable[[Any], bool] = lambda _: True) -> None:
        """Watch for an event that must not come, for a stated quiet period; fail as soon as it comes (or if
        this client saw it already).

        `why` says what the silence proves; it is part of the failure message.
        """
        try:
            seen = await self.wait_for(event, container_id, where, timeout=seconds)
        except AssertionError:
            return  # the quiet period passed without it
        raise AssertionError(f"{event} ({container_id}) within the {seconds:g} s quiet period ({why}): {seen}")

    async def close(self) -> None:
        await self.sio.disconnect()


def transitions(client: Client, cid: str) -> list[tuple[str, str]]:
    """Every (old_state, new_state) the client saw for a container, in order."""
    return [(e["old_state"], e["new_state"]) for e in client.of("status_changed", cid)]
