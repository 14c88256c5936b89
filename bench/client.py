"""The bench's client: the shared FlowClient plus the two measurements it takes from the event stream.

Requests go through flow_manager.client.FlowClient, the client users are given, so the bench measures
what a user of the manager sees (typed answers, FlowError on failure). Events are read with the
client's unparsed listener, not its event iterator: a model per broadcast would cost client CPU and show
up as manager latency. The bare Socket.IO baselines (bench/transport_baselines.py, the churn phase's
echo probe) stay on raw python-socketio: they measure the transport alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flow_manager.client import FlowClient


class BenchClient(FlowClient):
    def __init__(self, url: str) -> None:
        super().__init__(url, timeout=120, reconnect=False)
        self._pongs: dict[str, asyncio.Future[tuple[float, float]]] = {}
        self.splits: list[tuple[float, float]] | None = None  # (to the runtime, back) seconds, while recording
        self.status_arrivals: list[tuple[float, str]] | None = None  # (wall time, container_id) while recording
        self.listen(self._on_event_raw)

    def _on_event_raw(self, kind: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if kind == "message_received":
            self._on_message(data)
        elif kind == "container_status_update" and self.status_arrivals is not None:
            self.status_arrivals.append((time.time(), data.get("container_id", "")))

    def _on_message(self, data: dict[str, Any]) -> None:
        message = data.get("message")
        if isinstance(message, dict) and message.get("command") == "pong":
            waiter = self._pongs.pop(data.get("container_id", ""), None)
            if waiter is not None and not waiter.done():
                answered = (message.get("data") or {}).get("time")  # the runtime's clock is the host's
                waiter.set_result((time.perf_counter(), answered if isinstance(answered, float) else 0.0))

    async def ping(self, container_id: str, timeout: float = 10.0) -> float:
        """`send` {"command": "ping"} until its `message_received` pong; seconds.

        One ping per container at a time: the runtime's pong carries no request id.
        The pong's `data.time` (the runtime's wall clock) splits the round trip in
        two halves, recorded in `splits` when that is a list. The pong's arrival
        time is taken by the listener, so waiting for send's acknowledgement first
        does not lengthen the measured round trip.
        """
        waiter: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._pongs[container_id] = waiter
        wall, started = time.time(), time.perf_counter()
        try:
            await self.send(container_id, {"command": "ping"})
            arrived, answered = await asyncio.wait_for(waiter, timeout)
        finally:
            self._pongs.pop(container_id, None)
        total = arrived - started
        if self.splits is not None and answered:
            self.splits.append((answered - wall, total - (answered - wall)))
        return total
