"""One connection following one managed container's output: `container_log` events to that connection only.

The follow is about the managed container, not one Docker container: when the container stops, restarts or
is recreated (a new Docker id), the follower attaches again from the last line it saw per stream, so nothing
is repeated and nothing printed in between is lost (Docker keeps the old container's log until it is
removed; a recreation's first lines are newer than the old container's last). It ends with a final event
(`ended: true`, `reason: "deleted"`) when the record is gone.

A slow follower slows nothing else: lines wait in a bounded buffer (the oldest dropped and counted when it
is full) and are emitted in batches only while this connection's Engine.IO queue is short; the next event
says how many lines were dropped (`dropped`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable

from api.emitter import Emitter
from controller.adapters.docker import DockerAdapter
from controller.adapters.docker.logs import STREAMS, LogLine
from controller.clock import iso
from controller.observed import ABSENT
from controller.view import Observations
from store import DesiredState, MemoryStore

log = logging.getLogger("flow_manager.api")
LOG_EVENT = "container_log"
BUFFER_LINES = 2000  # per follow: beyond this the oldest waiting lines are dropped (and counted)
BATCH_LINES = 500  # lines per event at most
BATCH_BYTES = 256 * 1024  # text bytes per event at most
BATCH_INTERVAL = 0.1  # seconds: lines printed within this go out as one event
ATTACH_POLL = 0.25  # seconds between looks at the record while there is no running container to attach to
BACKLOG_HIGH = 64  # frames queued for the connection: past this, lines wait (and may be dropped) instead


def log_line(line: LogLine, timestamps: bool = True) -> dict[str, Any]:
    """A line as the API writes it."""
    return {"stream": line.stream, "text": line.text, "timestamp": iso(line.seconds) if timestamps and line.ns else None}


class LogFollower:
    def __init__(
        self,
        sid: str,
        container_id: str,
        tail: int,
        *,
        docker: DockerAdapter,
        store: MemoryStore,
        view: Observations,
        emitter: Emitter,
        backlog: Callable[[str], int],
        on_end: Callable[["LogFollower"], None],
        buffer_lines: int = BUFFER_LINES,
    ) -> None:
        self.sid, self.container_id, self.tail = sid, container_id, tail
        self.docker, self.store, self.view, self.emitter, self.backlog = docker, store, view, emitter, backlog
        self.on_end = on_end
        self.buffer: collections.deque[LogLine] = collections.deque()
        self.buffer_lines = buffer_lines
        self.dropped = 0
        self._ready = asyncio.Event()
        # per stream: the last line's stamp (the next attach starts after it); with no tail, from now
        start = 0 if tail else time.time_ns()
        self.seen: dict[str, int] = {stream: start for stream in STREAMS}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._attach_forever(), name=f"logs-{self.container_id}-{self.sid}"),
            asyncio.create_task(self._send_forever(), name=f"logs-send-{self.container_id}-{self.sid}"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _gone(self) -> bool:
        record = self.store.get(self.container_id)
        return record is None or record.desired is DesiredState.DELETED

    async def _attach_forever(self) -> None:
        first = True
        while not self._gone():
            state, docker_id = self.view.current(self.container_id, ABSENT)
            if docker_id is not None and (first or state == "running"):
                tail = self.tail if first else None
                first = False
                await asyncio.gather(*(self._read(docker_id, stream, tail) for stream in STREAMS))
            await asyncio.sleep(ATTACH_POLL)
        await self._end("deleted")

    async def _read(self, docker_id: str, stream: str, tail: int | None) -> None:
        """One Docker stream until it ends (the container stopped, or is gone); a failure only ends this attach."""
        since = None if tail else (self.seen[stream] + 1) / 1e9
        try:
            async for line in self.docker.follow_logs(docker_id, stream, since=since, tail=tail):
                if line.ns and line.ns <= self.seen[stream] and not tail:
                    continue  # Docker's since is inclusive at its own precision: never repeat a line
                self.seen[stream] = max(self.seen[stream], line.ns)
                self._offer(line)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the engine went away, the container was removed: look again
            log.debug("following %s of %s ended: %r", stream, docker_id[:12], exc)

    def _offer(self, line: LogLine) -> None:
        if len(self.buffer) >= self.buffer_lines:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(line)
        self._ready.set()

    async def _send_forever(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(BATCH_INTERVAL)  # gather what a burst prints into one event
            while self.backlog(self.sid) > BACKLOG_HIGH:  # this connection reads slowly: lines wait here, bounded
                await asyncio.sleep(BATCH_INTERVAL)
            await self._flush()

    async def _flush(self, ended: str | None = None) -> None:
        lines: list[dict[str, Any]] = []
        size = 0
        while self.buffer and len(lines) < BATCH_LINES and size < BATCH_BYTES:
            line = self.buffer.popleft()
            size += len(line.text)
            lines.append(log_line(line))
        if not self.buffer:
            self._ready.clear()
        payload = {"container_id": self.container_id, "lines": lines, "dropped": self.dropped, "ended": ended is not None}
        if ended is not None:
            payload["reason"] = ended
        self.dropped = 0
        await self.emitter.emit(LOG_EVENT, payload, to=self.sid)

    async def _end(self, reason: str) -> None:
        """The last lines, then the final event; the registry forgets this follow."""
        sender = self._tasks[1]
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        while self.buffer:
            await self._flush()
        await self._flush(ended=reason)
        self.on_end(self)
