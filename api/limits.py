"""Per-client request rate limit: one client's flood costs that client, not the others.

A token bucket per connection: `rate` requests per second sustained, bursts
up to `burst` (a UI that fires a batch of status reads, a script pipelining
messages). A request over the limit is refused at once, before validation,
so refusing stays cheap however fast the client sends.

The caller chooses the key: the API keys buckets by the Engine.IO session,
which outlives a Socket.IO namespace disconnect and reconnect ("41", "40"),
so leaving and joining again on the same connection does not refill it.
A bucket that has refilled is the same as no bucket, so such buckets are
pruned as clients come and go; memory stays bounded even for sessions whose
end the caller never saw.
"""

from __future__ import annotations

import time
from typing import Callable

from controller.ratelimit import TokenBucket

PRUNE_FLOOR = 1024  # buckets held before the first look for refilled ones


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = PRUNE_FLOOR

    def take(self, client: str) -> float:
        """Spend one token: 0.0 when the request may go ahead, else seconds until it could."""
        if self.rate <= 0:  # disabled
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[client] = TokenBucket(self.rate, float(self.burst), updated=now)
        return bucket.take(now)

    def forget(self, client: str) -> None:
        self._buckets.pop(client, None)

    @property
    def held(self) -> int:
        """Buckets held (not __len__: an empty limiter must not be falsy where callers write `limiter or ...`)."""
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled (forgetting them changes nothing); amortised O(1) per client."""
        self._buckets = {client: bucket for client, bucket in self._buckets.items() if not bucket.full(now)}
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self._buckets))
