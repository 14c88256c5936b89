"""A lean Socket.IO client for measuring: only the events a phase needs, handled synchronously.

The test harness's client records every event (a catch-all handler); here
that would cost client CPU per broadcast and show up as manager latency.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import socketio


class RequestFailed(Exception):
    def __init__(self, event: str, payload: dict[str, Any]) -> None:
        super().__init__(f"{event}: {payload.get('error_type')}: {payload.get('message')}")
        self.payload = payload


class BenchClient:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self._pongs: dict[str, asyncio.Future[tuple[float, float]]] = {}
        self.splits: list[tuple[float, float]] | None = None  # (to the runtime, back) seconds, while recording
        self.status_arrivals: list[tuple[float, str]] | None = None  # (wall time, container_id) while recording
        self.sio.on("message_received", self._on_message)
        self.sio.on("container_status_update", self._on_status)

    async def connect(self, url: str) -> "BenchClient":
        await self.sio.connect(url, transports=["websocket"], wait_timeout=10)
        return self

    async def close(self) -> None:
        await self.sio.disconnect()

    async def call(self, event: str, data: Any = None, timeout: float = 120) -> dict[str, Any]:
        """A request; its acknowledgement is the response payload (or the error payload)."""
        payload = await self.sio.call(event, data if data is not None else {}, timeout=timeout)
        if isinstance(payload, dict) and payload.get("error") is True:
            raise RequestFailed(event, payload)
        return payload

    def _on_message(self, data: dict[str, Any]) -> None:
        message = data.get("message") if isinstance(data, dict) else None
        if isinstance(message, dict) and message.get("command") == "pong":
            waiter = self._pongs.pop(data.get("container_id", ""), None)
            if waiter is not None and not waiter.done():
                answered = (message.get("data") or {}).get("time")  # the runtime's clock is the host's
                waiter.set_result((time.perf_counter(), answered if isinstance(answered, float) else 0.0))

    def _on_status(self, data: dict[str, Any]) -> None:
        if self.status_arrivals is not None:
            self.status_arrivals.append((time.time(), data.get("container_id", "")))

    async def ping(self, container_id: str, timeout: float = 10.0) -> float:
        """`send_message` {"command": "ping"} until its `message_received` pong; seconds.

        One ping per container at a time: the runtime's pong carries no request id.
        The pong's `data.time` (the runtime's wall clock) splits the round trip in
        two halves, recorded in `splits` when that is a list.
        """
        waiter: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._pongs[container_id] = waiter
        wall, started = time.time(), time.perf_counter()
        await self.sio.emit("send_message", {"container_id": container_id, "message": {"command": "ping"}})
        try:
            arrived, answered = await asyncio.wait_for(waiter, timeout)
        finally:
            self._pongs.pop(container_id, None)
        total = arrived - started
        if self.splits is not None and answered:
            self.splits.append((answered - wall, total - (answered - wall)))
        return total
