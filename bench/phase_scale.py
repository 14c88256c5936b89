"""Targets 4 and 6: status rounds, idle CPU and memory with many running managed containers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.client import BenchClient
from bench.processes import cpu_percent, cpu_seconds, engine_pids, rss_bytes
from bench.rounds import rounds_seen
from bench.session import Session, create_start
from flow_manager.config import Settings

STATUS_INTERVAL = Settings.status_interval  # the manager's default --status-interval, which the bench keeps
ROUND_GRACE = 3.0  # seconds a round due near the end of the window gets to be delivered inside it


async def fill_to(session: Session, total: int, in_flight: int = 20) -> float:
    """Create+start containers through the manager (all clients, `in_flight` at a time) until `total` run."""
    missing = total - len(session.running)
    if missing <= 0:
        return 0.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    slots = asyncio.Semaphore(in_flight)

    async def one(client: BenchClient) -> tuple[float, float, str]:
        async with slots:
            return await create_start(client, session.name("fill"))

    async with session.clients(session.sizes.clients) as connected:
        done = await asyncio.gather(*(one(connected[i % len(connected)]) for i in range(missing)))
    session.running.extend(container_id for _, _, container_id in done)
    return round(loop.time() - started, 2)


async def status_and_idle(session: Session) -> dict[str, Any]:
    """A quiet window: no requests, one client listening. CPU of the manager and the engine, status rounds."""
    engine = engine_pids()
    pids = [session.manager.pid, *engine.values()]
    await asyncio.sleep(2)  # let the last fill's events and reconciles settle
    calls_before = (await session.metrics())["docker_calls"]
    session.main.status_arrivals = []
    window_start = time.time()
    before = cpu_seconds(pids)
    await asyncio.sleep(session.sizes.idle_seconds)
    after = cpu_seconds(pids)
    window_end = time.time()
    arrivals, session.main.status_arrivals = session.main.status_arrivals, None
    metrics = await session.metrics()
    expected = len(session.running)
    # Rounds due inside the window, with time left to be delivered before it closed.
    ticks = [r["tick"] for r in metrics["status_rounds"] if window_start <= r["tick"] <= window_end - ROUND_GRACE]
    rounds = rounds_seen(arrivals, ticks, expected, STATUS_INTERVAL)
    full = [r for r in rounds if r["full"]]
    return {
        "containers": expected,
        "window_s": session.sizes.idle_seconds,
        "manager_cpu_percent": cpu_percent(before, after, session.manager.pid),
        "dockerd_cpu_percent": cpu_percent(before, after, engine["dockerd"]) if "dockerd" in engine else None,
        "containerd_cpu_percent": cpu_percent(before, after, engine["containerd"]) if "containerd" in engine else None,
        "rounds": rounds,
        "full_rounds": len(full),
        "incomplete_rounds": len(rounds) - len(full),
        "worst_round_ms": max((r["last_after_tick_ms"] for r in full), default=None),
        "server_rounds": [r for r in metrics["status_rounds"] if r["tick"] in ticks],
        "docker_calls_in_window": {k: v - calls_before.get(k, 0) for k, v in metrics["docker_calls"].items() if v - calls_before.get(k, 0)},
        "gc": metrics.get("gc"),
    }


async def memory(session: Session) -> dict[str, Any]:
    rss, peak = rss_bytes(session.manager.pid)
    return {"containers": len(session.running), "rss_mb": round(rss / 2**20, 1), "peak_rss_mb": round(peak / 2**20, 1)}
