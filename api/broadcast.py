"""The controller's event sink: formats events and emits them to every client.

One pump task emits in publication order, so a client always sees a
container's transitions in the order they happened. publish() never blocks
the controller.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import socketio

from api import payloads
from controller.status import StatusReport

log = logging.getLogger("flow_manager.api")


class Broadcaster:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        self.clients: set[str] = set()
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any], Callable[[], None] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="broadcast")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def listening(self) -> bool:
        return bool(self.clients)

    def publish(self, event: object, on_sent: Callable[[], None] | None = None) -> bool:
        """Queue an event for every client; `on_sent` runs once it has been emitted.

        Returns False (and never calls `on_sent`) when nobody is connected.
        """
        if not self.clients:
            return False
        if isinstance(event, StatusReport):
            name, payload = "container_status_update", payloads.status_update(event.status)
        else:
            name, payload = payloads.event(event)
        self._outbox.put_nowait((name, payload, on_sent))
        return True

    async def _pump(self) -> None:
        while True:
            name, payload, on_sent = await self._outbox.get()
            try:
                await self.sio.emit(name, payload)
            except Exception:
                log.exception("emitting %s failed", name)
            if on_sent is not None:
                on_sent()
