"""A durable journal behind the in-memory store.

The store stays the working set; the journal makes intent survive a manager
restart, SIGKILL included. Every change of intent marks the record's key
dirty; a background task writes the latest version of each dirty record as
one JSON line and fsyncs, off the event loop, coalescing bursts into one
write. The store shows a change to the controller only once its line is on
disk (`committed`); when a write fails, the changes it carried are withdrawn
(`discarded`) and the requests waiting for them answer at once.

Every append starts at the end of the last line known to be on disk (a
failed write's partial bytes are overwritten, then cut off), so a torn line
can only ever be the last one, and replay ignores it. At start the file is
replayed and compacted into a snapshot (and again every `compact_every`
lines); the directory is fsynced after the snapshot replaces the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from store.durability import JournalHealth, NotDurable
from store.records import ContainerSpec, DesiredState, Record, RestartTarget

log = logging.getLogger("flow_manager.journal")
FORMAT = 1

Version = tuple[Record | None, int]  # a record as it is to be written (None: removed), and its staging number


def record_to_json(record: Record) -> dict[str, Any]:
    data = asdict(record)
    data.pop("status")
    data["desired"] = record.desired.value
    return data


def record_from_json(data: dict[str, Any]) -> Record:
    spec = dict(data["spec"])
    spec["command"] = tuple(spec["command"]) if spec.get("command") else None
    target = data.get("restart_target")  # absent from journals written before it existed, as the next two
    return Record(
        id=data["id"],
        spec=ContainerSpec(**spec),
        desired=DesiredState(data["desired"]),
        generation=int(data["generation"]),
        created_at=float(data["created_at"]),
        code_revision=data.get("code_revision"),
        code_path=data.get("code_path"),
        restart_requests=int(data.get("restart_requests") or 0),
        restart_target=RestartTarget(int(target["request"]), target.get("docker_id"), target.get("started_at")) if target else None,
        ended_runs=tuple((str(docker_id), started_at) for docker_id, started_at in data.get("ended_runs") or ()),
        trace_context=data["trace_context"] if isinstance(data.get("trace_context"), str) else None,
    )


class Journal:
    def __init__(self, directory: str | Path, compact_every: int = 2000, retry_interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "records.jsonl"
        self.compact_every = compact_every
        self.retry_interval = retry_interval
        self.health = JournalHealth(str(self.directory))
        self._dirty: set[str] = set()
        self._queued = 0
        self._processed = 0
        self._size = 0  # end of the last line known to be on disk: the next append starts here
        self._lines_since_compaction = 0
        self._changed = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._pending: Callable[[str], Version] = lambda key: (None, 0)
        self._records: Callable[[], Iterable[Record]] = lambda: ()
        self._committed: Callable[[dict[str, Version]], None] = lambda batch: None
        self._discarded: Callable[[Iterable[str], NotDurable], None] = lambda keys, error: None

    # -- start-up (before the event loop serves anyone) ---------------------------
    def load(self) -> list[Record]:
        if not self.directory.exists():
            self.directory.mkdir(parents=True)
            _fsync_directory(self.directory.parent)  # the new directory's entry is durable too
        records: dict[str, Record] = {}
        data = self.path.read_bytes() if self.path.exists() else b""
        complete = data.rfind(b"\n") + 1  # bytes after the last newline are a torn write
        if complete < len(data):
            log.warning("journal: torn last line of %d bytes ignored", len(data) - complete)
        for number, line in enumerate(data[:complete].splitlines(), 1):
            try:
                entry = json.loads(line)
                if entry.get("op") == "put":
                    records[entry["record"]["id"]] = record_from_json(entry["record"])
                elif entry.get("op") == "remove":
                    records.pop(entry["id"], None)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("journal line %d ignored: %s", number, exc)
        try:
            self._write_snapshot(list(records.values()))
        except OSError as exc:  # a full disk at start: keep the file as it is, cut the torn tail off
            self.health.failed(exc)
            self._size = complete
            if complete < len(data):
                with contextlib.suppress(OSError):  # read-only: the next append fails and says so anyway
                    os.truncate(self.path, complete)
        return list(records.values())

    def _write_snapshot(self, records: list[Record]) -> None:
        tmp = self.path.with_suffix(".tmp")
        data = (
            json.dumps({"op": "format", "version": FORMAT})
            + "\n"
            + "".join(json.dumps({"op": "put", "record": record_to_json(r)}) + "\n" for r in records)
        ).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written snapshot on a full disk takes the space a retry needs
            raise
        _fsync_directory(self.directory)  # the rename itself is durable only once the directory is
        self._size = len(data)
        self._lines_since_compaction = len(records)

    def _append(self, data: bytes, lines: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            _write_all(fd, data, self._size)  # over whatever a failed attempt left behind
            os.ftruncate(fd, self._size + len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._size += len(data)
        self._lines_since_compaction += lines

    # -- running -------------------------------------------------------------------
    def attach(
        self,
        pending: Callable[[str], Version],
        records: Callable[[], Iterable[Record]],
        committed: Callable[[dict[str, Version]], None],
        discarded: Callable[[Iterable[str], NotDurable], None],
    ) -> None:
        """The store's side: what to write for a key, every current record (for a snapshot), and what to do
        once a batch is on disk or was refused."""
        self._pending, self._records, self._committed, self._discarded = pending, records, committed, discarded

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="journal")

    async def stop(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.flushed(), timeout)
        except TimeoutError:
            log.error("journal: pending changes not written within %g s of shutdown", timeout)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def changed(self, key: str) -> None:
        self._dirty.add(key)
        self._queued += 1
        self._changed.set()

    async def flushed(self) -> None:
        """Return once every change made before this call was written, or refused."""
        target = self._queued
        async with self._progress:
            await self._progress.wait_for(lambda: self._processed >= target)

    async def _supervise(self) -> None:
        """Run the writer; should it ever fail outside a batch, say so, withdraw what waits, and run it again."""
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("journal writer failed; restarting it")
                keys, self._dirty = self._dirty, set()
                await self._refused(keys, self.health.failed(exc), self._queued)

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            target, keys, self._dirty = self._queued, self._dirty, set()
            try:
                batch = {key: self._pending(key) for key in keys}
                if self._lines_since_compaction + len(batch) > self.compact_every:
                    await asyncio.to_thread(self._write_snapshot, list(self._records()))
                else:
                    data = "".join(
                        json.dumps({"op": "put", "record": record_to_json(record)} if record else {"op": "remove", "id": key}) + "\n"
                        for key, (record, _) in batch.items()
                    ).encode()
                    await asyncio.to_thread(self._append, data, len(batch))
                self.health.succeeded()
                self._committed(batch)
            except asyncio.CancelledError:
                self._dirty |= keys
                raise
            except Exception as exc:  # OSError (ENOSPC, EIO, EROFS...) or a bug: both must answer the waiters
                # Withdrawing a change that did reach the disk is safe: the retry writes the durable version again.
                await self._refused(keys, self.health.failed(exc), target)
                continue
            await self._advance(target)

    async def _refused(self, keys: set[str], error: NotDurable, target: int) -> None:
        """Withdraw the changes a failed write carried, then retry (their keys stay dirty): the retry writes
        the versions already on disk again, which tells when the directory takes writes again."""
        self._discarded(keys, error)
        self._dirty |= keys
        await self._advance(target)
        await asyncio.sleep(self.retry_interval)
        self._changed.set()

    async def _advance(self, target: int) -> None:
        async with self._progress:
            self._processed = max(self._processed, target)
            self._progress.notify_all()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
