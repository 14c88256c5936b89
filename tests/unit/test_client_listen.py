"""FlowClient's unparsed listener (used by the test harness and the bench) and its lazy parsing."""

from __future__ import annotations

import asyncio
from typing import Any

from flow_manager.client import FlowClient


def test_listener_sees_every_event_verbatim_and_nothing_is_parsed_without_an_iterator() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        fm = FlowClient("http://127.0.0.1:1", reconnect=False)
        seen: list[tuple[str, Any]] = []
        fm.listen(lambda kind, data: seen.append((kind, data)))
        # Not a valid status_changed: with nobody iterating it must not be parsed (nor raise).
        await fm._on_event("status_changed", {"container_id": "c1", "odd": True})
        await fm._on_event("container_created", {"container_id": "c1"})  # a response event
        return seen

    seen = asyncio.run(scenario())
    assert seen == [("status_changed", {"container_id": "c1", "odd": True}), ("container_created", {"container_id": "c1"})]


def test_an_open_iterator_gets_the_parsed_event_and_the_listener_the_raw_one() -> None:
    payload = {"container_id": "c1", "old_state": "created", "new_state": "running", "timestamp": 1.5}

    async def scenario() -> tuple[Any, list[Any]]:
        fm = FlowClient("http://127.0.0.1:1", reconnect=False)
        raw: list[Any] = []
        fm.listen(lambda _kind, data: raw.append(data))
        queue = fm.subscribe({"status_changed"}, "c1")
        await fm._on_event("status_changed", payload)
        return queue.queue.get_nowait(), raw

    event, raw = asyncio.run(scenario())
    assert raw == [payload]
    assert event.kind == "status_changed" and event.data.new_state == "running"  # type: ignore[attr-defined]
