"""Requests in flight, bounded per connection and in total: excess is refused at once, never queued.

python-socketio starts a task for every event a client sends, whatever the
client's rate limit; requests that wait (for Docker, for the journal, for a
slow read) pile up as tasks and memory, and every one of them costs the loop.
Counting what is in flight and refusing beyond `per_connection` for one
connection or `total` for all of them keeps that pile bounded: a refused
request costs one cheap answer (system_error, details.limit).
"""

from __future__ import annotations

import collections


class InFlight:
    def __init__(self, per_connection: int, total: int) -> None:
        self.per_connection, self.total = per_connection, total
        self.by_connection: collections.Counter[str] = collections.Counter()
        self.count = 0
        self.refused = 0

    def enter(self, connection: str) -> str | None:
        """Count a request in; the name of the limit it would exceed (and it is not counted) otherwise."""
        if 0 < self.total <= self.count:
            self.refused += 1
            return "max_requests_in_flight"
        if 0 < self.per_connection <= self.by_connection[connection]:
            self.refused += 1
            return "max_requests_in_flight_per_connection"
        self.count += 1
        self.by_connection[connection] += 1
        return None

    def leave(self, connection: str) -> None:
        self.count -= 1
        self.by_connection[connection] -= 1
        if self.by_connection[connection] <= 0:
            del self.by_connection[connection]
