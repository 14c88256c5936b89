"""A slow log follower: a bounded buffer, drops counted and reported; Docker's timestamps parsed exactly."""

from __future__ import annotations

from typing import Any

from api.log_follower import LogFollower
from controller.adapters.docker.logs import LogLine, parse_chunk, parse_timestamp


class RecordingEmitter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any]] = []

    async def emit(self, event: str, payload: Any, to: Any = None) -> None:
        self.sent.append((event, payload, to))


def test_docker_timestamps_keep_nanoseconds_and_order() -> None:
    short, long = parse_timestamp("2024-01-01T00:00:00.1Z"), parse_timestamp("2024-01-01T00:00:00.12Z")
    assert short is not None and long is not None and short < long  # as strings, ".1Z" sorts after ".12Z"
    assert parse_timestamp("2024-01-01T00:00:00.000000001Z") == 1704067200 * 10**9 + 1
    assert parse_timestamp("not a stamp") is None
    assert parse_chunk("stderr", "2024-01-01T00:00:00Z hello world\n") == [LogLine("stderr", "hello world", 1704067200 * 10**9)]


async def test_a_full_buffer_drops_the_oldest_and_the_next_event_says_how_many() -> None:
    emitter = RecordingEmitter()
    follower = LogFollower(
        "sid1",
        "c1",
        0,
        docker=None,
        store=None,
        view=None,
        emitter=emitter,
        backlog=lambda sid: 0,
        on_end=lambda f: None,
        buffer_lines=5,  # type: ignore[arg-type]
    )
    for i in range(12):
        follower._offer(LogLine("stdout", f"line {i}", i + 1))
    await follower._flush()
    [(event, payload, to)] = emitter.sent
    assert (event, to) == ("container_log", "sid1")
    assert [line["text"] for line in payload["lines"]] == [f"line {i}" for i in range(7, 12)]
    assert payload["dropped"] == 7 and payload["ended"] is False
    follower._offer(LogLine("stdout", "again", 99))
    await follower._flush()
    assert emitter.sent[-1][1]["dropped"] == 0
