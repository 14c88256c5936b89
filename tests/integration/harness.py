"""Test harness: the real `flow-manager serve` process and real Socket.IO clients."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import socketio

from flow_manager.client import FlowClient, FlowError

T = TypeVar("T")
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

    def __init__(self, workdir: Path, *extra: str, docker_host: str | None = None, instance: str | None = None) -> None:
        self.port = free_port()
        self.instance = instance or f"test-{RUN_ID}-{self.port}"
        self.workdir = workdir
        self.socket_dir = str(workdir / "sockets")
        self.log_path = workdir / f"server-{self.port}.log"
        self.args = [
            "--port",
            str(self.port),
            "--socket-dir",
            self.socket_dir,
            "--no-build-image",
            "--state-dir",
            str(workdir / "state"),
            "--instance",
            self.instance,
            "--status-interval",
            "1",
            "--restart-backoff-initial",
            "0.5",
            "--restart-backoff-max",
            "2",
            "--resync-period",
            "5",
            "--send-timeout",
            "1",
            "--log-level",
            "info",
            "--orphan-grace",
            "3",
            "--link-ping-interval",
            "0.5",
            "--link-ping-timeout",
            "3",
            "--code-roots",
            str(workdir.parent),  # pytest's tmp_path directories hold the tests' code
            *extra,
        ]
        self.env = {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flow_manager.cli", "serve", *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
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
    """The shared FlowClient (`fm`, typed methods) plus a record of every server event for the tests.

    Connection, requests and their failures go through flow_manager.client.FlowClient; this class adds
    what tests need on top: every event kept verbatim (`events`, `of`, `wait_for`, `expect_quiet`) and
    `call`, the raw acknowledgement, so a test can assert on an `error` payload as the wire carried it.
    """

    def __init__(self) -> None:
        self.fm = FlowClient(reconnect=True, timeout=90)
        self.sio = self.fm.sio  # the transport, for tests that emit frames or watch the disconnect themselves
        self.events: list[tuple[str, Any]] = []
        # (event, container_id or None) -> payloads: lookups stay cheap while a container floods
        self._index: dict[tuple[str, str | None], list[Any]] = {}
        self._changed = asyncio.Event()
        self.fm.listen(self._keep)

    async def _record(self, event: str, data: Any = None) -> None:
        """Feed one event to the record (unit tests of the helpers use it without a connection)."""
        self._keep(event, data)

    def _keep(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self._index.setdefault((event, None), []).append(data)
        if isinstance(data, dict) and isinstance(data.get("container_id"), str):
            self._index.setdefault((event, data["container_id"]), []).append(data)
        self._changed.set()

    async def connect(self, url: str, auth: Mapping[str, str] | None = None) -> "Client":
        self.fm.url = url
        self.fm.token = (auth or {}).get("token")
        self.fm.traceparent = (auth or {}).get("traceparent")
        try:
            await self.fm.connect()
        except FlowError as refused:  # the transport's exception type, as the refusal tests expect it
            raise socketio.exceptions.ConnectionError(refused.message) from None
        return self

    async def call(self, event: str, data: Any = None, timeout: float = 90) -> Any:
        """The request's acknowledgement as sent (an `error` payload is returned, not raised)."""
        return await self.fm.call_raw(event, data, timeout)

    def of(self, event: str, container_id: str | None = None, where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [d for d in self._index.get((event, container_id), ()) if where(d)]

    async def wait_for(
        self, event: str, container_id: str | None = None, where: Callable[[Any], bool] = lambda _: True, timeout: float = 30, count: int = 1
    ) -> Any:
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
                raise AssertionError(
                    f"no {event} ({container_id}) within {timeout}s (wanted {count}, "
                    f"{len(found)} matched); every {event} of it: {candidates[-15:]}; "
                    f"last events: {[(e, d) for e, d in self.events[-5:]]}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.fm.close()


def transitions(client: Client, cid: str) -> list[tuple[str, str]]:
    """Every (old_state, new_state) the client saw for a container, in order."""
    return [(e["old_state"], e["new_state"]) for e in client.of("status_changed", cid)]


Watch = str | Mapping[str, Callable[[Any], bool] | None]


async def expect_quiet(client: Client, events: Watch, period: float, *, what: str, container_id: str | None = None) -> None:
    """Fail if an unwanted event arrives within `period` seconds from now.

    `events` is an event name, or a mapping of event names to a predicate that picks the unwanted
    payloads (None: every payload of that event). Only events recorded after the call count: the
    caller asserts what happened before. Fails as soon as one arrives, naming what the quiet period
    was for and what broke it; otherwise returns after the whole period.
    """
    watched = {events: None} if isinstance(events, str) else dict(events)
    seen = {name: len(client._index.setdefault((name, container_id), [])) for name in watched}
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + period
    while True:
        for name, unwanted in watched.items():
            recorded = client._index[(name, container_id)]
            for payload in recorded[seen[name] :]:
                if unwanted is None or unwanted(payload):
                    raise AssertionError(
                        f"expected no {name} ({container_id or 'any container'}) for {period:g} s: "
                        f"{what}; got after {loop.time() - started:.2f} s: {payload!r}"
                    )
            seen[name] = len(recorded)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        client._changed.clear()
        try:
            await asyncio.wait_for(client._changed.wait(), remaining)
        except TimeoutError:
            pass


def expect_quiet_sync(count: Callable[[], int], period: float, *, what: str, poll: float = 0.01) -> None:
    """`expect_quiet` for synchronous clients (threads): fail if `count()` grows within `period` seconds."""
    before = count()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < period:
        now = count()
        if now != before:
            raise AssertionError(f"expected nothing for {period:g} s: {what}; got {now - before} more after {elapsed:.2f} s")
        time.sleep(poll)
    if count() != before:
        raise AssertionError(f"expected nothing for {period:g} s: {what}; got {count() - before} more")


async def wait_until(
    probe: Callable[[], T | Awaitable[T]], timeout: float, *, what: str, until: Callable[[T], bool] = bool, interval: float = 0.05
) -> T:
    """Poll `probe` (sync or async) until `until(value)` holds, and return that value.

    Fails after `timeout` seconds saying what it waited for and the last value it saw, so a slow
    machine shows up as a clear message instead of a fixed sleep that was too short.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if until(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last saw {value!r}")
        await asyncio.sleep(interval)
