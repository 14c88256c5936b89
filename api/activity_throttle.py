"""Aggregating the per-message activity_log entries (message_sent, message_received).

The activity log is a human-readable feed; `message_received` itself is the
data channel. One activity entry per message doubled and tripled what every
client had to receive for each message (each is broadcast to all clients), so
per container and direction this reports the first message of a window at
once and folds the rest of that window into one entry at its end, with
`details.count` saying how many messages it stands for — the way Kubernetes
aggregates repeated events. A lone message still appears immediately.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Callable

from controller.events import Activity

AGGREGATED = frozenset({"message_sent", "message_received"})


@dataclass
class _Window:
    folded: int = 0
    last: Activity | None = None
    timer: asyncio.TimerHandle | None = None


class ActivityThrottle:
    def __init__(self, emit: Callable[[Activity], None], window: float = 1.0) -> None:
        self.emit, self.window = emit, window
        self._windows: dict[tuple[str | None, str], _Window] = {}

    def offer(self, activity: Activity) -> None:
        """Emit now, or fold into the open window of this container and activity type."""
        if activity.activity_type not in AGGREGATED or self.window <= 0:
            self.emit(activity)
            return
        key = (activity.container_id, activity.activity_type)
        window = self._windows.get(key)
        if window is None:
            self.emit(activity)
            self._open(key)
            return
        window.folded += 1
        window.last = activity

    def _open(self, key: tuple[str | None, str]) -> None:
        window = _Window()
        window.timer = asyncio.get_running_loop().call_later(self.window, self._close, key)
        self._windows[key] = window

    def _close(self, key: tuple[str | None, str]) -> None:
        window = self._windows.pop(key, None)
        if window is None or not window.folded or window.last is None:
            return  # nothing arrived after the first: the window simply ends
        last = window.last
        self.emit(
            replace(last, message=f"{last.message} ({window.folded} messages in {self.window:g} s)", details={**last.details, "count": window.folded})
        )
        self._open(key)  # a steady stream gets one entry per window

    def close(self) -> None:
        for window in self._windows.values():
            if window.timer is not None:
                window.timer.cancel()
        self._windows.clear()
