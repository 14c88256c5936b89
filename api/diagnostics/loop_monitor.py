"""Event-loop lag: how late the loop runs a timer that was due.

Everything in the manager (requests, the reconcile loop, links, the status
round) shares one asyncio loop, so one callback that blocks it (a sync file
write, a big JSON encode, a long GC pause) delays every client at once. A
timer re-armed every `interval` seconds measures exactly that delay: when it
fires `lag` seconds after its due time, the loop was busy or blocked for at
least `lag`. It is a plain `call_later` callback (no task, no future); what
it costs is the wake-up itself: on the 2-core VM of docs/performance.md,
0.85 % of a core at the default 20 ms and 1.45 % at 10 ms. A stall of S ms
shows as a lag between S minus one interval and S.

A late timer has two possible causes: the loop was running code (ours to
fix), or the process was waiting for a CPU (the machine's). Each tick also
reads the loop thread's own CPU time (`time.thread_time`): the lag the loop
spent on a CPU is at most the CPU time it used since the timer was armed, so
`busy_lag = min(lag, thread CPU since arming)` bounds what our own code
caused, and a large lag with a small busy part is time the kernel gave to
other processes.

Every sample also goes to the `flow_manager.eventloop.lag` histogram (controller/metrics.py), and the
moment of the last tick tells the liveness probe (api/health.py) whether the loop still turns.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any

from controller import metrics

log = logging.getLogger("flow_manager.loop")


def percentile_ms(ordered: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of sorted seconds, in milliseconds; 0 for no samples."""
    if not ordered:
        return 0.0
    return round(ordered[min(int(p / 100 * len(ordered)), len(ordered) - 1)] * 1000, 3)


@dataclass
class LagWindow:
    """Lag statistics since the last reset (what a benchmark phase reads)."""

    started: float
    samples: int = 0
    total: float = 0.0
    maximum: float = 0.0
    over_50ms: int = 0
    busy_maximum: float = 0.0  # worst lag during which the loop thread was on a CPU (running code)
    busy_over_50ms: int = 0
    cpu_of_worst: float = 0.0  # loop-thread CPU seconds during the worst lag's interval


class LoopMonitor:
    def __init__(self, interval: float = 0.02, warn_after: float = 0.25, recent: int = 4096) -> None:
        self.interval = interval
        self.warn_after = warn_after  # a lag this long is logged: it is a stall every client felt
        self._recent: collections.deque[float] = collections.deque(maxlen=recent)
        self._window = LagWindow(started=time.time())
        self._lifetime_max = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._cpu_armed = 0.0
        self._last_warning = 0.0
        self.last_tick: float | None = None  # time.monotonic() of the latest sample (None before the first)
        self.last_lag = 0.0

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._loop = asyncio.get_running_loop()
        self._arm()

    def _arm(self) -> None:
        # Lag is measured on time.monotonic(): uvloop's loop.time() has 1 ms resolution and is
        # cached per loop iteration, so it would hide part of a stall.
        assert self._loop is not None
        self._due = time.monotonic() + self.interval
        self._cpu_armed = time.thread_time()
        self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self.record(max(time.monotonic() - self._due, 0.0), time.thread_time() - self._cpu_armed)
        self._arm()

    def record(self, lag: float, cpu: float | None = None) -> None:
        """One tick: `lag` seconds late, `cpu` seconds of loop-thread CPU since it was armed (None: unknown)."""
        self.last_tick, self.last_lag = time.monotonic(), lag
        metrics.EVENT_LOOP_LAG.record(lag)
        window = self._window
        window.samples += 1
        window.total += lag
        if lag > window.maximum:
            window.maximum, window.cpu_of_worst = lag, cpu if cpu is not None else lag
        busy = min(lag, cpu) if cpu is not None else lag
        window.busy_maximum = max(window.busy_maximum, busy)
        if lag > 0.05:
            window.over_50ms += 1
        if busy > 0.05:
            window.busy_over_50ms += 1
        self._lifetime_max = max(self._lifetime_max, lag)
        self._recent.append(lag)
        if lag >= self.warn_after and time.monotonic() - self._last_warning > 10:
            self._last_warning = time.monotonic()
            log.warning(
                "event loop stalled for %.0f ms (at most %.0f ms of it running code, the rest waiting for a CPU or blocked)", lag * 1000, busy * 1000
            )

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        """Lag in milliseconds: the window since the last reset, and the recent samples' percentiles."""
        window = self._window
        recent = sorted(self._recent)

        def pct(p: float) -> float:
            return percentile_ms(recent, p)

        result = {
            "interval_ms": self.interval * 1000,
            "enabled": self._handle is not None,
            "window": {
                "since": window.started,
                "samples": window.samples,
                "max_lag_ms": round(window.maximum * 1000, 3),
                "mean_lag_ms": round(window.total / window.samples * 1000, 3) if window.samples else 0.0,
                "lags_over_50ms": window.over_50ms,
                "max_busy_lag_ms": round(window.busy_maximum * 1000, 3),
                "busy_lags_over_50ms": window.busy_over_50ms,
                "cpu_during_max_lag_ms": round(window.cpu_of_worst * 1000, 3),
            },
            "recent": {"samples": len(recent), "p50_lag_ms": pct(50), "p99_lag_ms": pct(99)},
            "lifetime_max_lag_ms": round(self._lifetime_max * 1000, 3),
        }
        if reset:
            self._window = LagWindow(started=time.time())
            self._recent.clear()
        return result
