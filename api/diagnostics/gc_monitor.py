"""Garbage-collector pauses: how long each of Python's collections held the event loop.

A full (generation 2) collection walks every tracked object; with the
manager's working set that can be tens of milliseconds on a slow core, and
every client waits for it. `gc.callbacks` times each collection at almost no
cost, so a loop stall seen by api.diagnostics.loop_monitor can be told apart from
one caused by our own code.
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GcMonitor:
    def __init__(self) -> None:
        self._started: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.collections = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.maximum = [0.0, 0.0, 0.0]

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:
            return
        pause = time.perf_counter() - self._started
        self._started = None
        generation = min(int(info.get("generation", 0)), 2)
        self.collections[generation] += 1
        self.total[generation] += pause
        self.maximum[generation] = max(self.maximum[generation], pause)

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            f"gen{g}": {"collections": self.collections[g], "total_ms": round(self.total[g] * 1000, 2), "max_ms": round(self.maximum[g] * 1000, 2)}
            for g in range(3)
        }
        result["pending"] = list(gc.get_count())  # allocations towards the next collection of each generation
        result["frozen_objects"] = gc.get_freeze_count()
        if reset:
            self._reset()
        return result
