"""A container's output through aiodocker's log API: read a bounded tail, or follow one stream.

aiodocker decodes Docker's multiplexed stream but does not say which stream a frame came from, so
stdout and stderr are asked for separately (one request each) and merged by Docker's timestamps,
which are always requested: they order the merge and let a follower resume after a restart without
repeating lines (`since` = the last line seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import aiodocker

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LogLine:
    """One line a container printed; `ns` is Docker's timestamp in nanoseconds since the epoch (the sort key)."""

    stream: str
    text: str
    ns: int

    @property
    def seconds(self) -> float:
        return self.ns / 1e9


def parse_timestamp(value: str) -> int | None:
    """Docker's RFC 3339 with up to nine fraction digits (trailing zeros trimmed) → nanoseconds; None if not one."""
    head, _, rest = value.partition(".")
    fraction = rest.rstrip("Z")
    if not rest.endswith("Z") and rest:
        return None
    try:
        whole = datetime.strptime(head.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    if fraction and not fraction.isdigit():
        return None
    return int(whole.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


def parse_chunk(stream: str, chunk: str) -> list[LogLine]:
    """A decoded frame (one or more `TIMESTAMP text` lines) → lines; a line without a timestamp keeps 0."""
    lines = []
    for raw in chunk.splitlines():
        stamp, _, text = raw.partition(" ")
        ns = parse_timestamp(stamp)
        lines.append(LogLine(stream, text, ns) if ns is not None else LogLine(stream, raw, 0))
    return lines


def docker_since(seconds: float | None) -> dict[str, Any]:
    """Docker's `since` parameter: seconds with a nanosecond fraction (it compares with the nanosecond stamps)."""
    return {} if seconds is None else {"since": f"{seconds:.9f}"}


async def read(docker: aiodocker.Docker, docker_id: str, *, streams: tuple[str, ...], tail: int, since: float | None) -> list[LogLine]:
    """The last `tail` lines of the chosen streams (each asked for `tail`), merged in time order."""
    container = docker.containers.container(docker_id)
    merged: list[LogLine] = []
    for stream in streams:
        query = {"timestamps": True, "tail": str(tail), **docker_since(since)}
        chunks = await container.log(stdout=stream == "stdout", stderr=stream == "stderr", **query)
        for chunk in chunks:
            merged.extend(parse_chunk(stream, chunk))
    merged.sort(key=lambda line: line.ns)  # stable: a stream's own order is kept for equal stamps
    return merged[-tail:] if tail else []


async def follow(docker: aiodocker.Docker, docker_id: str, stream: str, since: float | None, tail: int | None = None) -> AsyncIterator[LogLine]:
    """One stream of one Docker container from `since` (or its last `tail` lines) until that container stops."""
    container = docker.containers.container(docker_id)
    query = {"timestamps": True, **docker_since(since), **({"tail": str(tail)} if tail is not None else {})}
    async for chunk in container.log(stdout=stream == "stdout", stderr=stream == "stderr", follow=True, **query):
        for line in parse_chunk(stream, chunk):
            yield line
