"""Per-client request rate limit: one client's flood costs that client, not the others.

A token bucket per connection: `rate` requests per second sustained, bursts
up to `burst` (a UI that fires a batch of status reads, a script pipelining
messages). A request over the limit is refused at once, before validation,
so refusing stays cheap however fast the client sends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client: str) -> float:
        """Spend one token: 0.0 when the request may go ahead, else seconds until it could."""
        if self.rate <= 0:  # disabled
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def forget(self, client: str) -> None:
        self._buckets.pop(client, None)
