"""Target 5: responsiveness while 100 containers are created, started, stopped and deleted.

A probe client calls list_containers back to back (20 ms apart) for the whole
churn; the manager's loop monitor (get_metrics) reports the worst lag of the
same window. Two baselines run in the same seconds: a canary process
(bench.canary) that does nothing but measure its own loop lag, and a bare
Socket.IO echo server probed the same way as list_containers, so what the
churn costs every process on the machine is told apart from what the manager adds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, Awaitable, Callable

import socketio

from bench.client import BenchClient
from bench.processes import ROOT, Child, cpu_percent, cpu_seconds, engine_pids, free_port
from bench.session import Session, create_start
from bench.stats import summarize


async def _lifecycle(client: BenchClient, name: str) -> None:
    _, _, container_id = await create_start(client, name)
    await client.stop(container_id)
    await client.delete(container_id)


async def _probe(call: Callable[[], Awaitable[Any]], finished: asyncio.Event, samples: list[float]) -> None:
    while not finished.is_set():
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)


async def target(session: Session) -> dict[str, Any]:
    count, clients = session.sizes.churn, session.sizes.clients
    names = [session.name("churn") for _ in range(count)]
    listing: list[float] = []
    echoing: list[float] = []
    finished = asyncio.Event()

    port = free_port()
    echo_server = Child(["-m", "bench.echo_servers", "socketio", str(port)], session.workdir / "echo-churn.log", port)
    echo_server.start()
    echo = socketio.AsyncClient(reconnection=False)
    canary = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.canary",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await echo.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        await asyncio.sleep(1)  # started and measuring
        engine = engine_pids()
        pids = [session.manager.pid, *engine.values()]
        async with session.clients(clients) as connected:
            await session.metrics(reset=True)
            probes = [
                asyncio.create_task(_probe(session.main.list, finished, listing)),
                asyncio.create_task(_probe(lambda: echo.call("echo", {"command": "list"}, timeout=30), finished, echoing)),
            ]
            before = cpu_seconds(pids)
            started = time.perf_counter()
            try:
                await asyncio.gather(*(_lifecycle(connected[i % clients], n) for i, n in enumerate(names)))
            finally:
                finished.set()
                await asyncio.gather(*probes)
            elapsed = time.perf_counter() - started
            after_cpu = cpu_seconds(pids)
            after = await session.metrics(reset=True)
            lag = after["loop"]
    finally:
        await echo.disconnect()
        echo_server.stop()
        out, _ = await canary.communicate(b"")  # closing its stdin ends the canary, also after a failure
    canary_lag = json.loads(out.decode().strip().splitlines()[-1])["window"]
    return {
        "containers": count,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "max_loop_lag_ms": lag["window"]["max_lag_ms"],
        "loop_lags_over_50ms": lag["window"]["lags_over_50ms"],
        # the part of the lag the loop thread spent on a CPU (its own work) vs. waiting for one
        "max_busy_loop_lag_ms": lag["window"].get("max_busy_lag_ms"),
        "busy_loop_lags_over_50ms": lag["window"].get("busy_lags_over_50ms"),
        "cpu_during_max_loop_lag_ms": lag["window"].get("cpu_during_max_lag_ms"),
        "canary_max_busy_lag_ms": canary_lag.get("max_busy_lag_ms"),
        "loop_lag_samples": lag["window"]["samples"],
        "loop_lag_p99_ms": lag["recent"]["p99_lag_ms"],
        "list_ms": summarize(x * 1000 for x in listing),
        "gc": after.get("gc"),
        # inside the manager: from the handler starting to its answer queued (the rest is socket + waiting)
        "list_handler_ms": (after.get("requests") or {}).get("list_containers"),
        "canary_max_lag_ms": canary_lag["max_lag_ms"],
        "canary_lags_over_50ms": canary_lag["lags_over_50ms"],
        "canary_lag_samples": canary_lag["samples"],
        "echo_ms": summarize(x * 1000 for x in echoing),
        "manager_cpu_percent": cpu_percent(before, after_cpu, session.manager.pid),
        "dockerd_cpu_percent": cpu_percent(before, after_cpu, engine["dockerd"]) if "dockerd" in engine else None,
    }
