"""The generic reconcile loop (controller/loop.py) with a scripted reconciler: no containers involved."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import pytest

from controller.loop import BACKOFF, NO_RETRY, ErrorBackoff, Loop, Result, Retry
from controller.queue import WorkQueue

Step = Callable[[str, int], Awaitable[Result]]


class Scripted:
    """Runs `step(key, pass number)` for each pass; records when passes ran and what happened after them."""

    def __init__(self, step: Step, on_failure: Retry = BACKOFF) -> None:
        self.step, self.on_failure = step, on_failure
        self.passes: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.successes: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.changed = asyncio.Event()

    async def reconcile(self, key: str) -> Result:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        try:
            self.passes.setdefault(key, []).append(time.monotonic())
            return await self.step(key, len(self.passes[key]))
        finally:
            self.running.discard(key)
            self.changed.set()

    def failed(self, key: str, error: Exception) -> Retry:
        self.failures.append(key)
        return self.on_failure

    def succeeded(self, key: str) -> None:
        self.successes.append(key)

    async def until(self, done: Callable[[], bool], timeout: float = 3.0) -> None:
        async def wait() -> None:
            while not done():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def loops() -> object:
    started: list[Loop] = []

    def make(reconciler: Scripted, backoff: ErrorBackoff | None = None, workers: int = 4) -> Loop:
        loop = Loop(WorkQueue(), reconciler, backoff=backoff or ErrorBackoff(), workers=workers)
        loop.start()
        started.append(loop)
        return loop

    yield make
    for loop in started:
        await loop.stop()


def test_error_backoff_doubles_per_key_up_to_its_maximum_and_is_forgotten():
    backoff = ErrorBackoff(initial=0.5, maximum=3.0)
    assert [backoff.when("a") for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.when("b") == 0.5, "each key has its own"
    backoff.forget("a")
    assert backoff.when("a") == 0.5 and backoff.failures("b") == 0.5
    backoff.forget_all()
    assert backoff.failures("a") == backoff.failures("b") == 0.0


async def test_a_result_with_requeue_after_brings_the_key_back_after_that_delay(loops):
    async def step(key: str, n: int) -> Result:
        return Result(requeue_after=0.2) if n == 1 else Result()

    reconciler = Scripted(step)
    loop = loops(reconciler)
    loop.queue.add("k")
    await reconciler.until(lambda: len(reconciler.passes.get("k", [])) == 2)
    first, second = reconciler.passes["k"]
    assert 0.18 <= second - first < 1.5, second - first
    assert reconciler.successes == ["k", "k"] and reconciler.failures == []


async def test_failures_are_retried_after_a_growing_back_off_that_a_success_resets(loops):
    async def step(key: str, n: int) -> Result:
        if n in (1, 2, 3, 5):
            raise RuntimeError(f"pass {n}")
        return Result(requeue_after=0.01) if n == 4 else Result()

    reconciler = Scripted(step)
    backoff = ErrorBackoff(initial=0.1, maximum=10.0)
    loop = loops(reconciler, backoff)
    loop.queue.add("k")
    await reconciler.until(lambda: len(reconciler.passes.get("k", [])) == 6, timeout=5.0)
    at = reconciler.passes["k"]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert 0.09 <= gaps[0] < 0.3 and 0.19 <= gaps[1] < 0.5 and 0.39 <= gaps[2] < 0.9, gaps  # 0.1, 0.2, 0.4
    assert gaps[4] < 0.3, f"the success of pass 4 reset the back-off: {gaps}"  # 0.1 again, not 0.8
    assert reconciler.failures == ["k"] * 4 and backoff.failures("k") == 0.0


async def test_a_failure_is_retried_as_the_reconciler_says(loops):
    async def step(key: str, n: int) -> Result:
        raise RuntimeError("always")

    never, fixed = Scripted(step, NO_RETRY), Scripted(step, Retry(after=0.05))
    loops(never).queue.add("k")
    loops(fixed).queue.add("k")
    await fixed.until(lambda: len(fixed.passes.get("k", [])) == 3)
    assert len(never.passes["k"]) == 1, "no retry: the key waits for its next wake-up"


async def test_a_key_is_worked_on_by_one_worker_at_a_time_and_wake_ups_meanwhile_are_not_lost(loops):
    release = asyncio.Event()

    async def step(key: str, n: int) -> Result:
        if key == "k" and n == 1:
            await release.wait()
        return Result()

    reconciler = Scripted(step)
    loop = loops(reconciler, workers=4)
    loop.queue.add("k")
    loop.queue.add("other")
    await reconciler.until(lambda: "other" in reconciler.successes)  # other keys are not held up by "k"
    assert reconciler.running == {"k"}
    for _ in range(5):
        loop.queue.add("k")  # woken while a worker holds it: once more afterwards, never beside it
    assert loop.queue.pending() == 0, "held keys are not handed to another worker"
    release.set()
    await reconciler.until(lambda: len(reconciler.passes["k"]) == 2)
    await reconciler.until(loop.queue.idle)
    assert len(reconciler.passes["k"]) == 2, "five wake-ups during the pass collapse into one more pass"
    assert reconciler.overlaps == 0


async def test_sources_run_beside_the_workers_and_stop_with_them():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def source() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def step(key: str, n: int) -> Result:
        return Result()

    loop = Loop(WorkQueue(), Scripted(step), backoff=ErrorBackoff(), workers=1, sources={"feed": source})
    loop.start()
    await asyncio.wait_for(started.wait(), 1.0)
    await loop.stop()
    assert cancelled.is_set()
