"""Target 2: 100 containers declared at once by 10 clients, against 100 concurrent aiodocker create+start.

The direct run goes first and its containers are removed before the
manager's run, so both start from the same number of containers on the engine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.session import Session, create_start
from bench.stats import summarize


async def target(session: Session) -> dict[str, Any]:
    count, clients = session.sizes.fanout, session.sizes.clients
    direct_s, direct_each, docker_ids = await session.direct.fanout([session.name("fanout-d") for _ in range(count)])
    await session.direct.remove(docker_ids)
    await asyncio.sleep(2)  # let the engine finish tearing down before the manager's run

    names = [session.name("fanout") for _ in range(count)]
    async with session.clients(clients) as connected:
        started = time.perf_counter()
        done = await asyncio.gather(*(create_start(connected[i % clients], name) for i, name in enumerate(names)))
        manager_s = time.perf_counter() - started
    session.running.extend(container_id for _, _, container_id in done)
    return {
        "containers": count,
        "clients": clients,
        "manager_s": round(manager_s, 3),
        "direct_s": round(direct_s, 3),
        "manager_each_ms": summarize((c + s) * 1000 for c, s, _ in done),
        "direct_each_ms": summarize(x * 1000 for x in direct_each),
    }
