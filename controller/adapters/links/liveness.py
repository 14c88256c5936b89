"""Link liveness: the manager pings every connected runtime and wakes the reconciler when a verdict changes.

A ping never waits (one that cannot be written at once is just an unanswered
ping); controller.health turns pings answered or not into a health word.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from controller.adapters.links.link import Link
from controller.adapters.links.wire import write_now
from controller.health import link_health
from flow_runtime.protocol import PING

if TYPE_CHECKING:
    from controller.adapters.links.manager import LinkManager


async def probe_forever(manager: LinkManager) -> None:
    while True:
        await asyncio.sleep(manager.ping_interval)
        now = time.time()
        for link in list(manager.links.values()):
            ping(link, now, manager.max_frame)
            verdict = link_health(manager.probe(link.container_id), now=now, timeout=manager.ping_timeout)
            if verdict != link.reported_health:
                link.reported_health = verdict
                manager.wake(link.container_id)


def ping(link: Link, now: float, max_frame: int) -> None:
    """Never waits: a ping that cannot be written at once is just an unanswered ping."""
    writer = link.writer
    if writer is None or writer.is_closing() or link.waiting_since is not None:
        return
    link.ping_seq += 1
    link.waiting_since = now
    write_now(writer, link, {"command": PING, "seq": link.ping_seq}, max_frame)


def answered(link: Link) -> bool:
    """The runtime answered a ping: True when that changes the link's verdict (the reconciler must look)."""
    link.waiting_since, link.answered_at = None, time.time()
    if link.reported_health != "healthy":
        link.reported_health = "healthy"
        return True
    return False
