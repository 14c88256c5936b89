"""What the controller does when the Docker engine goes away and when it comes back.

controller/engine.py notices (pings, the event stream) and tells clients; these are its `on_lost` and
`on_back`. Lost: every known container's state becomes `unknown`, once, and status reads stop waiting
for a look that cannot happen. Back: back-offs earned during the outage are forgotten and everything
is relisted, so the controller converges at once.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from controller.events import Activity, EventSink, StatusChanged
from controller.loop import ErrorBackoff
from controller.memory import Memory
from controller.view import UNKNOWN, Observations
from store import MemoryStore


class OutageReactions:
    def __init__(
        self, store: MemoryStore, sink: EventSink, view: Observations, memory: Memory, errors: ErrorBackoff, resync: Callable[[], Awaitable[None]]
    ) -> None:
        self.store, self.sink, self.view, self.memory, self.errors = store, sink, view, memory, errors
        self.resync = resync

    def lost(self) -> None:
        """Every container's state becomes unknown, once; nothing is decided until Docker answers again."""
        now = time.time()
        for key, seen in self.view.keys.items():
            record = self.store.get(key)
            if record is None or seen.state in (None, UNKNOWN):
                continue
            self.sink.publish(StatusChanged(key, seen.state, UNKNOWN, now))
            self.sink.publish(
                Activity(
                    "status_change",
                    key,
                    f"Container {record.spec.name} {seen.state} -> {UNKNOWN}: Docker engine unreachable",
                    {"old_state": seen.state, "new_state": UNKNOWN, "reason": "docker_unreachable"},
                )
            )
            seen.state = UNKNOWN
        self.view.answer_all()  # status reads answer from what is known: nothing to wait for

    async def back(self) -> None:
        """Relist everything and converge at once: back-offs earned during the outage are forgotten."""
        self.errors.forget_all()
        self.memory.clear_strikes()
        for seen in self.view.keys.values():
            seen.last_error = None
            seen.restart_not_before, seen.waiting_reason = None, None
        await self.resync()
