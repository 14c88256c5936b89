"""The code handshake: which revision a runtime runs (its hello), and a reload confirmed by the runtime.

A reload sends `flow.reload` and waits until the runtime reports the wanted
revision (`flow.reloaded`, or a `flow.hello` after it dialled again) or an
error loading it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from controller.adapters.links.link import Link, LinkFailure
from flow_runtime.protocol import HELLO, RELOAD

if TYPE_CHECKING:
    from controller.adapters.links.manager import LinkManager


async def reload(manager: LinkManager, container_id: str, revision: str, timeout: float) -> None:
    """Ask the runtime to load new code and wait until it runs `revision`."""
    link = manager.links.get(container_id)
    if link is None:
        raise LinkFailure("socket_connection_error", "the container's link is not connected")
    waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    entry = (revision, waiter)
    link.reload_waiters.append(entry)
    try:
        await manager.send(container_id, {"command": RELOAD, "revision": revision})
        try:
            error = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise LinkFailure("socket_timeout_error", f"the runtime did not confirm revision {revision} within {timeout:g} s") from None
        if error:
            raise LinkFailure("socket_error", f"the runtime could not load revision {revision}: {error}")
    finally:
        if entry in link.reload_waiters:
            link.reload_waiters.remove(entry)


def reported(link: Link, command: str, message: dict[str, Any]) -> bool:
    """The runtime said which revision it runs: settle waiting reloads; True for a hello (the reconciler looks)."""
    revision = message.get("revision")
    link.revision = revision if isinstance(revision, str) else None
    for wanted, waiter in list(link.reload_waiters):
        if not waiter.done() and (wanted == link.revision or message.get("error")):
            waiter.set_result(message.get("error"))
    return command == HELLO


def abandon(link: Link) -> None:
    """The link is gone: reloads waiting on it end (cancelled)."""
    for _, waiter in link.reload_waiters:
        if not waiter.done():
            waiter.cancel()
