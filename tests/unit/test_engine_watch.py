"""The engine watch against a fake engine: an event stream that keeps ending is retried with back-off."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from controller.engine import EngineWatch


class EngineWithoutEvents:
    """Answers pings; its event stream ends at once (a socket proxy that refuses /events, say)."""

    def __init__(self) -> None:
        self.streams = 0

    async def ping(self) -> None:
        return None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        self.streams += 1
        return
        yield {}  # an async generator that yields nothing


class Sink:
    def __init__(self) -> None:
        self.published: list[object] = []

    def publish(self, event: object, on_sent: Any = None) -> bool:
        self.published.append(event)
        return True


async def test_a_stream_that_keeps_ending_is_retried_with_back_off_and_each_new_one_relists():
    engine, relists = EngineWithoutEvents(), []

    async def relist() -> None:
        relists.append(1)

    async def back() -> None:
        raise AssertionError("the engine never went away")

    watch = EngineWatch(engine, Sink(), docker_host="fake", on_event=lambda e: None, on_lost=lambda: None, on_back=back, on_resubscribed=relist)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(1.7)  # back-off 0.5 s then 1 s: three streams, not thousands
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 2 <= engine.streams <= 3, engine.streams
    assert len(relists) == engine.streams - 1, "every stream after the first relists once it is open"
    assert watch.available


async def test_a_suspicion_wakes_the_watch_out_of_its_back_off():
    engine = EngineWithoutEvents()

    async def nothing() -> None:
        return None

    watch = EngineWatch(engine, Sink(), docker_host="fake", on_event=lambda e: None, on_lost=lambda: None, on_back=nothing, on_resubscribed=nothing)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.1)  # the first stream ended at once: the watch waits out a 0.5 s back-off now
    streams = engine.streams
    assert streams == 1
    watch.suspect()  # a call just failed as if the engine were gone: ping now, not after the back-off
    deadline = asyncio.get_running_loop().time() + 0.3  # the back-off alone would end 0.4 s from now at the earliest
    while engine.streams == streams and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert engine.streams == streams + 1, "woken by the suspicion, before the back-off ended"
