"""A durable journal behind the in-memory store.

The store stays the working set; the journal makes intent survive a manager
restart, SIGKILL included. Every change of intent marks the record's key
dirty; a background task writes the latest version of each dirty record as
one JSON line and fsyncs, off the event loop, coalescing bursts into one
write. Requests await `flushed()` before answering, so an answered intent is
on disk. At start the file is replayed and compacted into a snapshot (and
again every `compact_every` lines).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from store.records import ContainerSpec, DesiredState, Record, RestartTarget

log = logging.getLogger("flow_manager.journal")
FORMAT = 1


def record_to_json(record: Record) -> dict[str, Any]:
    data = asdict(record)
    data.pop("status")
    data["desired"] = record.desired.value
    return data


def record_from_json(data: dict[str, Any]) -> Record:
    spec = dict(data["spec"])
    spec["command"] = tuple(spec["command"]) if spec.get("command") else None
    target = data.get("restart_target")  # absent from journals written before it existed, as the next two
    return Record(id=data["id"], spec=ContainerSpec(**spec), desired=DesiredState(data["desired"]),
                  generation=int(data["generation"]), created_at=float(data["created_at"]),
                  code_revision=data.get("code_revision"), code_path=data.get("code_path"),
                  restart_requests=int(data.get("restart_requests") or 0),
                  restart_target=RestartTarget(int(target["request"]), target.get("docker_id"), target.get("started_at"))
                  if target else None,
                  ended_runs=tuple((str(docker_id), started_at) for docker_id, started_at in data.get("ended_runs") or ()))


class Journal:
    def __init__(self, directory: str | Path, compact_every: int = 2000) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "records.jsonl"
        self.compact_every = compact_every
        self._dirty: set[str] = set()
        self._queued = 0
        self._written = 0
        self._lines_since_compaction = 0
        self._changed = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._lookup: Callable[[str], Record | None] = lambda key: None

    # -- start-up (before the event loop serves anyone) ---------------------------
    def load(self) -> list[Record]:
        self.directory.mkdir(parents=True, exist_ok=True)
        records: dict[str, Record] = {}
        if self.path.exists():
            with self.path.open() as fh:
                for number, line in enumerate(fh, 1):
                    try:
                        entry = json.loads(line)
                        if entry.get("op") == "put":
                            records[entry["record"]["id"]] = record_from_json(entry["record"])
                        elif entry.get("op") == "remove":
                            records.pop(entry["id"], None)
                    except (ValueError, KeyError, TypeError) as exc:  # a torn last line after a crash
                        log.warning("journal line %d ignored: %s", number, exc)
        self._write_snapshot(list(records.values()))
        return list(records.values())

    def _write_snapshot(self, records: list[Record]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            fh.write(json.dumps({"op": "format", "version": FORMAT}) + "\n")
            for record in records:
                fh.write(json.dumps({"op": "put", "record": record_to_json(record)}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._lines_since_compaction = len(records)

    # -- running -------------------------------------------------------------------
    def attach(self, lookup: Callable[[str], Record | None], records: Callable[[], list[Record]]) -> None:
        self._lookup, self._records = lookup, records

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journal")

    async def stop(self) -> None:
        await self.flushed()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def changed(self, key: str) -> None:
        self._dirty.add(key)
        self._queued += 1
        self._changed.set()

    async def flushed(self) -> None:
        """Return once every change made before this call is on disk."""
        target = self._queued
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            target, keys, self._dirty = self._queued, self._dirty, set()
            lines = []
            for key in keys:
                record = self._lookup(key)
                entry = {"op": "put", "record": record_to_json(record)} if record else {"op": "remove", "id": key}
                lines.append(json.dumps(entry) + "\n")
            try:
                if self._lines_since_compaction + len(lines) > self.compact_every:
                    await asyncio.to_thread(self._write_snapshot, list(self._records()))
                else:
                    await asyncio.to_thread(self._append, lines)
            except OSError:
                log.exception("journal write failed; will retry")
                self._dirty |= keys
                self._changed.set()
                await asyncio.sleep(1)
                continue
            async with self._progress:
                self._written = target
                self._progress.notify_all()

    def _append(self, lines: list[str]) -> None:
        with self.path.open("a") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        self._lines_since_compaction += len(lines)
