"""Closed-loop load: each worker does one round trip after another; nothing is pipelined."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

RoundTrip = Callable[[], Awaitable[float]]  # performs one round trip, returns its duration in seconds


@dataclass
class LoadResult:
    seconds: float
    completed: int
    errors: int
    latencies: list[float] = field(default_factory=list)  # seconds, round trips completed inside the window

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


async def sequential(round_trip: RoundTrip, count: int, warmup: int = 0) -> list[float]:
    for _ in range(warmup):
        await round_trip()
    return [await round_trip() for _ in range(count)]


async def closed_loop(workers: list[RoundTrip], duration: float) -> LoadResult:
    """Run every worker in a loop for `duration`; count what completes inside it.

    A warm-up is a separate call whose result is dropped, so that CPU readings taken around the measured
    call cover exactly its window.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    result = LoadResult(seconds=duration, completed=0, errors=0)

    async def run(round_trip: RoundTrip) -> None:
        while loop.time() < end:
            try:
                latency = await round_trip()
            except (TimeoutError, asyncio.TimeoutError):
                result.errors += 1
                continue
            if loop.time() <= end:
                result.completed += 1
                result.latencies.append(latency)

    began = time.perf_counter()
    await asyncio.gather(*(run(w) for w in workers))
    result.seconds = min(duration, time.perf_counter() - began) if duration else 0.0
    return result
