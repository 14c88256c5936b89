"""Everything that puts a key on the queue from outside the loop: store changes, Docker events, the resync.

Level-triggered: a wake-up only says "look at key X again"; the reconcile decides from the record and a
fresh read of Docker. The periodic resync is the safety net for anything a stream dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol

from controller.adapters.docker import DockerFailure
from controller.engine import EngineState
from controller.labels import CONTAINER_ID
from store import MemoryStore

log = logging.getLogger("flow_manager.controller")


class ManagedIds(Protocol):
    async def managed_ids(self) -> dict[str, list[str]]: ...


class Wakeups:
    def __init__(
        self, store: MemoryStore, docker: ManagedIds, engine: EngineState, wake: Callable[[str], None], *, resync_period: float = 30.0
    ) -> None:
        self.store, self.docker, self.engine, self.wake = store, docker, engine, wake
        self.resync_period = resync_period
        self.relisted = False  # Docker's containers listed at least once since the manager started (readiness)
        store.watch(wake)  # a record changed (once it is on disk): look at it

    async def resync(self) -> None:
        """Queue every key we know of or Docker has: the level-triggered safety net.

        Nothing while the engine is unreachable: each reconcile would only fail, and the engine's return
        resyncs everything.
        """
        if not self.engine.available:
            return
        for record in self.store.records():
            self.wake(record.id)
        try:
            for managed_id in await self.docker.managed_ids():
                self.wake(managed_id)
            self.relisted = True
        except DockerFailure as failure:
            log.warning("resync could not list containers: %s", failure.message)

    async def resync_forever(self) -> None:
        while True:
            await self.resync()
            await asyncio.sleep(self.resync_period)

    def docker_event(self, event: dict[str, object]) -> None:
        """An event on Docker's stream names a container of ours (by its label): look at that key."""
        actor = event.get("Actor")
        attributes = actor.get("Attributes") if isinstance(actor, dict) else None
        managed_id = attributes.get(CONTAINER_ID) if isinstance(attributes, dict) else None
        if isinstance(managed_id, str) and managed_id:
            self.wake(managed_id)
