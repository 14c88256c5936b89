"""One token bucket, the arithmetic behind every rate limit in the manager.

`rate` tokens a second refill the bucket up to `burst`. Two ways to spend:
`take` spends a token only when one is there and otherwise says how long
until one would be (the caller refuses, or waits and asks again); `reserve`
always spends, going into debt, and says how long the caller must wait for
its turn (callers queue in order). The caller passes the time, so the bucket
is pure and each user keeps its own clock.

Users: api.limits (per-client requests: take, refuse when over), the link
server's frame and byte rates (reserve a frame's cost once it is read, then
wait until `due` says 0 before reading the next) and its reconnection rate
(reserve, wait).
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, *, tokens: float | None = None, updated: float = 0.0) -> None:
        """Full unless `tokens` says otherwise; `updated` is when `tokens` was true."""
        self.rate, self.burst = rate, burst
        self.tokens = burst if tokens is None else tokens
        self.updated = updated

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> float:
        """Spend one token if there is one (0.0); else the seconds until there would be, spending nothing."""
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Spend `cost` tokens, in debt if need be: the seconds until this reservation's turn (0.0 when at once)."""
        self.refill(now)
        self.tokens -= cost
        return self.due(now)

    def due(self, now: float) -> float:
        """Seconds until the debt is repaid (0.0 when there is none). Asked again after a wait, it never
        trusts the wait: a timer that fired early (uvloop rounds to whole milliseconds) leaves the rest."""
        self.refill(now)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def full(self, now: float) -> bool:
        """Refilled by `now`: forgetting this bucket and starting a new full one changes nothing."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst
