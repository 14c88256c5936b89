"""The controller's event sink: formats events and emits them to every client.

One pump task emits in publication order, so a client always sees a
container's transitions in the order they happened. publish() never blocks
the controller. Per-message activity entries are aggregated
(api.activity_throttle) and events are emitted without a task per client
(api.emitter).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable

import socketio

from api import payloads
from api.activity_throttle import ActivityThrottle
from api.emitter import Emitter
from controller.events import Activity
from controller.status import StatusReport

log = logging.getLogger("flow_manager.api")
PUMP_SLICE = 0.002  # seconds of emitting before the pump lets other callbacks run
CLIENT_BACKLOG_HIGH = 256  # frames queued for one client: past this, deliveries are confirmed only once it drains
CLIENT_BACKLOG_LOW = 64
LAG_READ_EVERY = 0.002  # seconds
CLIENT_STUCK_AFTER = 10.0  # seconds a client may hold the others back before it is no longer waited for
# (event name, payload, callback once emitted, recipients: None for every client)
Outgoing = tuple[str, dict[str, Any], Callable[[], None] | None, list[str] | None]


class Broadcaster:
    def __init__(self, sio: socketio.AsyncServer, activity_window: float = 1.0) -> None:
        self.sio = sio
        self.emitter = Emitter(sio)
        self.clients: set[str] = set()
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        # Extension `subscribe_messages`: sid -> the containers whose message_received it wants (absent: all).
        self.message_filters: dict[str, frozenset[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._throttle = ActivityThrottle(self._enqueue_activity, activity_window)
        self._unconfirmed: collections.deque[Callable[[], None]] = collections.deque()
        self._ignored: set[str] = set()  # clients too far behind for too long: not waited for
        self._confirmer: asyncio.Task[None] | None = None
        self._lag_read_at, self._lag_value = 0.0, 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="broadcast")

    async def stop(self) -> None:
        self._throttle.close()
        for task in (self._task, self._confirmer):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def listening(self) -> bool:
        return bool(self.clients)

    def publish(self, event: object, on_sent: Callable[[], None] | None = None) -> bool:
        """Queue an event for every client; `on_sent` runs once it has been emitted.

        Returns False (and never calls `on_sent`) when nobody is connected.
        """
        if not self.clients:
            return False
        if isinstance(event, Activity) and on_sent is None:
            self._throttle.offer(event)
            return True
        if isinstance(event, StatusReport):
            name, payload = "container_status_update", payloads.status_update(event.status)
        else:
            name, payload = payloads.event(event)
        recipients = self.message_recipients(payload["container_id"]) if name == "message_received" else None
        self._outbox.put_nowait((name, payload, on_sent, recipients))
        return True

    def subscribe(self, sid: str, container_ids: frozenset[str] | None) -> None:
        """Only these containers' `message_received` for this client from now on (None: every container's)."""
        if container_ids is None:
            self.message_filters.pop(sid, None)
        else:
            self.message_filters[sid] = container_ids

    def forget(self, sid: str) -> None:
        self.clients.discard(sid)
        self.message_filters.pop(sid, None)

    def message_recipients(self, container_id: str) -> list[str] | None:
        """The clients a container's message goes to; None when no client narrowed its subscription."""
        if not self.message_filters:
            return None
        filters = self.message_filters
        return [sid for sid in self.clients if sid not in filters or container_id in filters[sid]]

    def _confirm(self, on_sent: Callable[[], None]) -> None:
        """Tell the publisher its event is delivered, or wait until no client lags far behind.

        Emitting only queues frames for each client; a client that reads slower
        than a container sends would let that queue grow without bound. Holding
        back the confirmation keeps the link's in-flight count high, so the link
        stops reading and the flood waits in the container's own socket: container
        messages go at the pace of the slowest client. A client that stays behind
        for CLIENT_STUCK_AFTER seconds (one that stopped reading) is no longer
        waited for until it catches up, so it cannot hold the others back longer;
        its own queue then grows as it did before (README, Limitations).
        """
        if not self._unconfirmed and self._recent_lag() <= CLIENT_BACKLOG_HIGH:
            on_sent()
            return
        self._unconfirmed.append(on_sent)
        if self._confirmer is None or self._confirmer.done():
            self._confirmer = asyncio.create_task(self._confirm_when_drained(), name="broadcast-backpressure")

    def _recent_lag(self) -> int:
        """_lag(), read at most once per LAG_READ_EVERY: reading every client's queue for every container
        message cost more than the rest of the confirmation, and a queue grows by far less than the
        headroom between CLIENT_BACKLOG_HIGH and the limits in that time."""
        now = time.perf_counter()
        if now - self._lag_read_at > LAG_READ_EVERY:
            self._lag_read_at, self._lag_value = now, self._lag()
        return self._lag_value

    def _lag(self) -> int:
        """Frames queued for the slowest client that is still waited for."""
        backlogs = self.emitter.backlogs()
        self._ignored = {sid for sid in self._ignored if backlogs.get(sid, 0) > CLIENT_BACKLOG_LOW}  # caught up or gone
        return max((n for sid, n in backlogs.items() if sid not in self._ignored), default=0)

    async def _confirm_when_drained(self) -> None:
        loop = asyncio.get_running_loop()
        while self._unconfirmed:
            behind_since = loop.time()
            while self._lag() > CLIENT_BACKLOG_LOW:
                if loop.time() - behind_since > CLIENT_STUCK_AFTER:
                    stuck = {sid for sid, n in self.emitter.backlogs().items() if n > CLIENT_BACKLOG_LOW}
                    log.warning("clients %s stayed behind for %.0f s: no longer waiting for them", ", ".join(sorted(stuck)), CLIENT_STUCK_AFTER)
                    self._ignored |= stuck
                await asyncio.sleep(0.005)
            while self._unconfirmed:
                self._unconfirmed.popleft()()

    def _enqueue_activity(self, activity: Activity) -> None:
        if self.clients:
            self._outbox.put_nowait((*payloads.event(activity), None, None))

    async def _pump(self) -> None:
        last_yield = time.perf_counter()
        while True:
            name, payload, on_sent, recipients = await self._outbox.get()
            try:
                await self.emitter.emit(name, payload, to=recipients)
            except Exception:
                log.exception("emitting %s failed", name)
            if on_sent is not None:
                self._confirm(on_sent)
            # Emitting never suspends, so a backlog (a status round, a flooding container) would otherwise
            # be drained in one go while requests wait: give the loop a turn every couple of milliseconds.
            if time.perf_counter() - last_yield > PUMP_SLICE:
                await asyncio.sleep(0)
                last_yield = time.perf_counter()
