"""Same-run baselines for messages: bare Socket.IO and a bare AF_UNIX echo, no manager in between."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import socketio

from bench.load import closed_loop, sequential
from bench.processes import Child, cpu_seconds, free_port
from bench.stats import summarize
from flow_runtime.framing import encode, read_frame


async def unix_echo(workdir: Path, count: int) -> dict[str, Any]:
    """Round trips of one framed JSON message to an echo process over AF_UNIX (what a link costs at least)."""
    path = workdir / "echo.sock"
    server = Child(["-m", "bench.echo_servers", "unix", str(path)], workdir / "echo-unix.log")
    server.start()
    try:
        for _ in range(200):
            if path.exists():
                break
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_unix_connection(str(path))
        return await _framed_pings(reader, writer, count)
    finally:
        server.stop()


async def _framed_pings(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int) -> dict[str, Any]:
    """`count` framed pings, one at a time, each until its answer frame (after 100 not counted); closes the writer."""
    frame = encode({"command": "ping"})

    async def round_trip() -> float:
        started = time.perf_counter()
        writer.write(frame)
        await read_frame(reader)
        return time.perf_counter() - started

    samples = await sequential(round_trip, count, warmup=100)
    writer.close()
    return {"rtt_ms": summarize(s * 1000 for s in samples)}


async def runtime_echo(workdir: Path, count: int) -> dict[str, Any]:
    """ping -> pong with the reference runtime (flow_runtime, run on the host) over AF_UNIX: a link's far end.

    Against unix_echo this isolates what the runtime itself adds to a round trip.
    """
    path = workdir / "runtime.sock"
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.get_running_loop().create_future()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not connected.done():
            connected.set_result((reader, writer))

    server = await asyncio.start_unix_server(accept, path=str(path))
    (workdir / "no-code").mkdir(exist_ok=True)
    runtime = Child(
        ["-m", "flow_runtime"],
        workdir / "runtime.log",
        env={"FLOW_LINK": str(path), "FLOW_CODE_DIR": str(workdir / "no-code"), "FLOW_LOG_LEVEL": "WARNING"},
    )
    runtime.start()
    try:
        reader, writer = await asyncio.wait_for(connected, 30)
        await read_frame(reader)  # flow.hello
        return await _framed_pings(reader, writer, count)
    finally:
        runtime.stop()
        server.close()


async def socketio_baselines(workdir: Path, count: int, clients: int, duration: float) -> dict[str, Any]:
    """call() round trip with one client; throughput with every reply broadcast to all clients, and to its sender only."""
    port = free_port()
    server = Child(["-m", "bench.echo_servers", "socketio", str(port)], workdir / "echo-socketio.log", port)
    server.start()
    connected: list[socketio.AsyncClient] = []
    try:
        one = socketio.AsyncClient(reconnection=False)
        await one.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        connected.append(one)

        async def call() -> float:
            started = time.perf_counter()
            await one.call("echo", {"command": "ping"}, timeout=10)
            return time.perf_counter() - started

        rtt = await sequential(call, count, warmup=100)

        for _ in range(clients - 1):
            extra = socketio.AsyncClient(reconnection=False)
            await extra.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
            connected.append(extra)
        results: dict[str, Any] = {"socketio_rtt_ms": summarize(s * 1000 for s in rtt)}
        for event in ("broadcast", "unicast"):
            workers = [_round_trip(client, i, event) for i, client in enumerate(connected)]
            await closed_loop(workers, 1.0)  # warm-up, not counted
            before = cpu_seconds([server.pid, os.getpid()])
            load = await closed_loop(workers, duration)
            after = cpu_seconds([server.pid, os.getpid()])
            server_cpu_s = after.seconds[server.pid] - before.seconds[server.pid]
            client_cpu_s = after.seconds[os.getpid()] - before.seconds[os.getpid()]
            results.update(
                {
                    f"socketio_{event}_per_s": round(load.per_second, 1),
                    f"socketio_{event}_server_cpu_ms_per_rt": round(server_cpu_s * 1000 / max(load.completed, 1), 3),
                    f"socketio_{event}_client_cpu_ms_per_rt": round(client_cpu_s * 1000 / max(load.completed, 1), 3),
                    f"socketio_{event}_rtt_ms": summarize(s * 1000 for s in load.latencies),
                    f"socketio_{event}_clients": clients,
                    f"socketio_{event}_errors": load.errors,
                }
            )
            for client in connected:
                client.handlers.get("/", {}).pop("pong", None)
        return results
    finally:
        for client in connected:
            await client.disconnect()
        server.stop()


def _round_trip(client: socketio.AsyncClient, me: int, event: str):  # type: ignore[no-untyped-def]
    """One client's round trip: emit, wait for the pong carrying its own id (others' broadcasts are ignored)."""
    waiting: dict[str, asyncio.Future[float]] = {}

    def on_pong(data: dict[str, Any]) -> None:
        if data.get("client") == me and (waiter := waiting.pop("next", None)) and not waiter.done():
            waiter.set_result(time.perf_counter())

    client.on("pong", on_pong)

    async def round_trip() -> float:
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting["next"] = waiter
        started = time.perf_counter()
        await client.emit(event, {"client": me, "command": "ping"})
        return await asyncio.wait_for(waiter, 10) - started

    return round_trip
