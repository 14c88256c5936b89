"""A work queue with controller-runtime's guarantees.

- A key is handed to at most one worker at a time.
- Adding a key that is already waiting is a no-op (wake-ups collapse).
- Adding a key while a worker holds it marks it dirty; it is queued again
  when that worker calls done(), so no change is ever missed.
- add_after() schedules a wake-up; the earliest pending one wins.

It records controller-runtime's workqueue metrics (controller/metrics.py): adds, time in queue, work time;
its depth is observed from pending().
"""

from __future__ import annotations

import asyncio
import time

from controller import metrics


class WorkQueue:
    def __init__(self) -> None:
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._added: dict[str, float] = {}  # key -> when it was added (waiting, or dirty while processing)
        self._taken: dict[str, float] = {}  # key -> when a worker took it

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        metrics.WORKQUEUE_ADDS.add(1)
        self._added[key] = time.monotonic()
        if key not in self._processing:
            self._ready.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        key = await self._ready.get()
        self._dirty.discard(key)
        self._processing.add(key)
        now = time.monotonic()
        metrics.WORKQUEUE_QUEUE_DURATION.record(now - self._added.pop(key, now))
        self._taken[key] = now
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        now = time.monotonic()
        metrics.WORKQUEUE_WORK_DURATION.record(now - self._taken.pop(key, now))
        if key in self._dirty:
            self._ready.put_nowait(key)

    def pending(self) -> int:
        return self._ready.qsize()

    def idle(self) -> bool:
        """No key waiting and none being worked on (timers of add_after may still be pending)."""
        return self._ready.empty() and not self._processing

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
