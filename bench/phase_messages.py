"""Target 3: send_message ping until its message_received pong, with 1 client and with 10."""

from __future__ import annotations

import os
from typing import Any

from bench.load import LoadResult, closed_loop, sequential
from bench.processes import container_cpu_seconds, cpu_seconds
from bench.session import Session
from bench.stats import summarize


async def rtt(session: Session, count: int) -> dict[str, Any]:
    container_id = session.running[0]
    await sequential(lambda: session.main.ping(container_id), 0, warmup=min(100, count))
    session.main.splits = []
    samples = await sequential(lambda: session.main.ping(container_id), count)
    splits, session.main.splits = session.main.splits, None
    return {**summarize(s * 1000 for s in samples), "to_runtime_p50": _p50(a for a, _ in splits), "from_runtime_p50": _p50(b for _, b in splits)}


def _p50(values: Any) -> float | None:
    summary = summarize(v * 1000 for v in values)
    return summary.get("p50")


async def _measured(session: Session, workers: list[Any], docker_ids: list[str]) -> tuple[LoadResult, dict[str, float]]:
    """A closed-loop load, and where its CPU went: manager, this process (the clients), the runtimes."""
    await closed_loop(workers, 1.0)  # warm-up, not counted
    runtimes_before = container_cpu_seconds(docker_ids)
    before = cpu_seconds([session.manager.pid, os.getpid()])
    load = await closed_loop(workers, session.sizes.load_seconds)
    after = cpu_seconds([session.manager.pid, os.getpid()])
    spent = {
        "manager": after.seconds[session.manager.pid] - before.seconds[session.manager.pid],
        "bench": after.seconds[os.getpid()] - before.seconds[os.getpid()],
        "runtimes": container_cpu_seconds(docker_ids) - runtimes_before,
    }
    per_rt = {f"{who}_cpu_ms_per_rt": round(seconds * 1000 / max(load.completed, 1), 3) for who, seconds in spent.items()}
    percent = {f"{who}_cpu_percent": round(seconds / max(load.seconds, 1e-9) * 100, 2) for who, seconds in spent.items()}
    return load, {**per_rt, **percent}


async def target(session: Session) -> dict[str, Any]:
    clients = session.sizes.clients
    one = await rtt(session, session.sizes.pings)
    async with session.clients(clients) as connected:
        targets = session.running[:clients]
        workers = [lambda c=c, t=t: c.ping(t) for c, t in zip(connected, targets)]
        for client in connected:
            client.splits = []
        listing = await session.main.list()
        docker_ids = [c.docker_id for c in listing.containers if c.id in targets and c.docker_id]
        # Exactly `clients` recipients, as in the bare Socket.IO baseline: the bench's own control
        # connection takes no container messages meanwhile.
        await session.main.subscribe_messages([])
        try:
            load, cpu = await _measured(session, workers, docker_ids)
            # The same load with each client subscribed (extension subscribe_messages) to its own container only.
            for client, target_id in zip(connected, targets):
                await client.subscribe_messages([target_id])
            narrow, narrow_cpu = await _measured(session, workers, docker_ids)
        finally:
            await session.main.subscribe_messages(None)
    return {
        "rtt_ms": one,
        "clients": clients,
        "throughput_per_s": round(load.per_second, 1),
        "throughput_rtt_ms": {
            **summarize(s * 1000 for s in load.latencies),
            "to_runtime_p50": _p50(a for c in connected for a, _ in c.splits or []),
            "from_runtime_p50": _p50(b for c in connected for _, b in c.splits or []),
        },
        "throughput_errors": load.errors,
        "throughput_cpu": cpu,
        "load_manager_cpu_percent": cpu["manager_cpu_percent"],
        "load_manager_cpu_ms_per_rt": cpu["manager_cpu_ms_per_rt"],
        "subscribed_throughput_per_s": round(narrow.per_second, 1),
        "subscribed_throughput_rtt_ms": summarize(s * 1000 for s in narrow.latencies),
        "subscribed_throughput_errors": narrow.errors,
        "subscribed_throughput_cpu": narrow_cpu,
    }
