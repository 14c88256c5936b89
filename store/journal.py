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
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from store.durability import JournalHealth, NotDurable, StateDirError
from store.journal_replay import Skipped, record_from_json, replay
from store.records import Record

__all__ = ["FORMAT", "Journal", "Skipped", "record_from_json", "record_to_json"]

log = logging.getLogger("flow_manager.journal")
FORMAT = 1

Version = tuple[Record | None, int]  # a record as it is to be written (None: removed), and its staging number


def record_to_json(record: Record) -> dict[str, Any]:
    data = asdict(record)
    data.pop("status")
    data["desired"] = record.desired.value
    return data


class Journal:
    def __init__(
        self,
        directory: str | Path,
        compact_every: int = 2000,
        retry_interval: float = 1.0,
        on_write: Callable[[str, float, bool], None] = lambda operation, seconds, ok: None,
    ) -> None:
        self.directory = Path(directory)
        self.on_write = on_write  # (append or snapshot, seconds, succeeded) of each write: the metrics' journal latency
        self.path = self.directory / "records.jsonl"
        self.compact_every = compact_every
        self.retry_interval = retry_interval
        self.health = JournalHealth(str(self.directory))
        self._dirty: set[str] = set()
        self._queued = 0
        self._processed = 0
        self._size = 0  # end of the last line known to be on disk: the next append starts here
        self._lines_since_compaction = 0
        self.skipped: list[Skipped] = []  # damaged lines the last load skipped
        self._changed = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._pending: Callable[[str], Version] = lambda key: (None, 0)
        self._records: Callable[[], Iterable[Record]] = lambda: ()
        self._committed: Callable[[dict[str, Version]], None] = lambda batch: None
        self._discarded: Callable[[Iterable[str], NotDurable], None] = lambda keys, error: None

    # -- start-up (before the event loop serves anyone) ---------------------------
    def load(self) -> list[Record]:
        """Replay and compact. Damaged lines are skipped (`self.skipped`), their file kept aside for the
        operator; a directory that refuses writes (read-only, no permission) is `StateDirError`: the
        manager would accept no change of intent, so it does not start. A full disk still starts."""
        try:
            if not self.directory.exists():
                self.directory.mkdir(parents=True)
                _fsync_directory(self.directory.parent)  # the new directory's entry is durable too
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise StateDirError(self.directory, exc) from exc
        replayed = replay(data)
        records, complete, self.skipped = replayed.records, replayed.complete, replayed.skipped
        if complete < len(data):
            log.warning("journal: torn last line of %d bytes ignored", len(data) - complete)
        if self.skipped:
            self._keep_damaged(data)
        try:
            self._write_snapshot(list(records.values()))
        except OSError as exc:  # a full disk at start: keep the file as it is, cut the torn tail off
            if StateDirError.refuses_writes(exc):
                raise StateDirError(self.directory, exc) from exc
            self.health.failed(exc)
            self._size = complete
            if complete < len(data):
                with contextlib.suppress(OSError):  # read-only: the next append fails and says so anyway
                    os.truncate(self.path, complete)
        return list(records.values())

    def _keep_damaged(self, data: bytes) -> None:
        """Say what was skipped (count, offsets) and keep the file as it was: compaction drops those lines."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        with contextlib.suppress(OSError):  # a full disk: the log line below is the report
            aside.write_bytes(data)
            os.chmod(aside, 0o600)
        first = ", ".join(f"byte {s.offset} ({s.reason})" for s in self.skipped[:5])
        log.error(
            "journal: %d damaged record(s) skipped, the rest kept; the file as it was is %s; first: %s",
            len(self.skipped),
            aside,
            first,
        )

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
            operation, started = "append", time.perf_counter()
            try:
                batch = {key: self._pending(key) for key in keys}
                if self._lines_since_compaction + len(batch) > self.compact_every:
                    operation = "snapshot"
                    await asyncio.to_thread(self._write_snapshot, list(self._records()))
                else:
                    data = "".join(
                        json.dumps({"op": "put", "record": record_to_json(record)} if record else {"op": "remove", "id": key}) + "\n"
                        for key, (record, _) in batch.items()
                    ).encode()
                    await asyncio.to_thread(self._append, data, len(batch))
                self.on_write(operation, time.perf_counter() - started, True)
                self.health.succeeded()
                self._committed(batch)
            except asyncio.CancelledError:
                self._dirty |= keys
                raise
            except Exception as exc:  # OSError (ENOSPC, EIO, EROFS...) or a bug: both must answer the waiters
                # Withdrawing a change that did reach the disk is safe: the retry writes the durable version again.
                self.on_write(operation, time.perf_counter() - started, False)
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
