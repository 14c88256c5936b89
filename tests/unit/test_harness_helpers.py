"""The integration harness's waiting helpers can fail: a quiet period that never complains would hide bugs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.integration.harness import Client, expect_quiet, expect_quiet_sync, wait_until


async def test_expect_quiet_fails_on_the_first_unwanted_event_and_names_it():
    client = Client()  # never connected: events are fed to its recorder directly
    await client._record("status_changed", {"container_id": "a", "new_state": "running"})  # before: not counted

    async def later() -> None:
        await asyncio.sleep(0.05)
        await client._record("status_changed", {"container_id": "b", "new_state": "stopped"})  # another container
        await client._record("activity_log", {"container_id": "a", "activity_type": "message_received"})  # not picked
        await asyncio.sleep(0.05)
        await client._record("status_changed", {"container_id": "a", "new_state": "stopped"})

    feeder = asyncio.create_task(later())
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"expected no status_changed \(a\) for 2 s: settled; got after 0\.1"):
        await expect_quiet(
            client, {"status_changed": None, "activity_log": lambda a: a["activity_type"] == "container_crash"}, 2, container_id="a", what="settled"
        )
    assert time.monotonic() - started < 1, "fails at once, not at the end of the period"
    await feeder


async def test_expect_quiet_lasts_the_whole_period_when_nothing_comes():
    client = Client()
    started = time.monotonic()
    await expect_quiet(client, "container_crashed", 0.2, what="nothing")
    assert time.monotonic() - started >= 0.2


def test_expect_quiet_sync_sees_a_late_event_from_another_thread():
    events: list[int] = []
    threading.Timer(0.05, events.append, (1,)).start()
    with pytest.raises(AssertionError, match="got 1 more"):
        expect_quiet_sync(lambda: len(events), 0.5, what="late answers")


async def test_wait_until_returns_the_value_or_says_what_it_waited_for():
    values = iter(range(100))
    assert await wait_until(lambda: next(values), 2, until=lambda v: v >= 3, what="three", interval=0.01) == 3

    async def status() -> dict:
        return {"health": "starting"}

    with pytest.raises(AssertionError, match=r"waited 0\.1 s for healthy; last saw \{'health': 'starting'\}"):
        await wait_until(status, 0.1, until=lambda s: s["health"] == "healthy", what="healthy", interval=0.02)
