"""Target 1 and the intent-to-running points of the plots.

Manager and direct measurements are interleaved one by one (rotating which
goes first), so both see the same engine load; the direct containers are
removed right away so the engine holds the same number of containers for both.
"""

from __future__ import annotations

from typing import Any

from bench.session import Session, create_start
from bench.stats import summarize


async def interleaved(session: Session, count: int, with_plain: bool) -> dict[str, Any]:
    manager, same, plain = [], [], []
    m_create, m_start, d_create, d_start = [], [], [], []
    for i in range(count):
        steps = ["manager", "same"] + (["plain"] if with_plain else [])
        steps = steps[i % len(steps) :] + steps[: i % len(steps)]
        leftovers = []
        for step in steps:
            name = session.name("intent")
            if step == "manager":
                create, start, container_id = await create_start(session.main, name)
                manager.append(create + start)
                m_create.append(create)
                m_start.append(start)
                session.running.append(container_id)
            else:
                body = session.direct.same_body(name) if step == "same" else session.direct.plain_body(name)
                create, start, docker_id = await session.direct.create_start(body, name)
                (same if step == "same" else plain).append(create + start)
                if step == "same":
                    d_create.append(create)
                    d_start.append(start)
                leftovers.append(docker_id)
        await session.direct.remove(leftovers)
    ms = lambda xs: summarize(x * 1000 for x in xs)  # noqa: E731
    result = {
        "count": count,
        "manager_ms": ms(manager),
        "direct_same_body_ms": ms(same),
        "manager_create_ms": ms(m_create),
        "manager_start_ms": ms(m_start),
        "direct_create_ms": ms(d_create),
        "direct_start_ms": ms(d_start),
    }
    if with_plain:
        result["direct_plain_ms"] = ms(plain)
    return result


async def target(session: Session) -> dict[str, Any]:
    return await interleaved(session, session.sizes.intent, with_plain=True)


async def level_point(session: Session, managed_before: int) -> dict[str, Any]:
    """A plot point: intent to running at this many managed containers."""
    point = await interleaved(session, session.sizes.level_sample, with_plain=False)
    return {"managed": managed_before, "intent_ms": point["manager_ms"], "direct_ms": point["direct_same_body_ms"]}
