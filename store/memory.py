"""In-memory store of desired-state records.

Single-threaded by design: every method runs on the event loop and none
awaits, so a read-modify-write is atomic without locks. Watchers are told the
key of every change (to wake the controller); waiters let a request handler
await the moment its intent has been converged or has failed.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Iterable

from store.records import (
    ContainerSpec,
    ConvergeError,
    DesiredState,
    Record,
    RecordStatus,
    new_container_id,
)

if TYPE_CHECKING:
    from store.journal import Journal

Watcher = Callable[[str], None]
Predicate = Callable[[Record | None], bool]


class NameInUse(Exception):
    def __init__(self, name: str, container_id: str) -> None:
        super().__init__(f"name {name!r} is already used by container {container_id}")
        self.name, self.container_id = name, container_id


class UnknownContainer(KeyError):
    pass


class MemoryStore:
    def __init__(self, records: Iterable[Record] = (), journal: "Journal | None" = None) -> None:
        self._records: dict[str, Record] = {r.id: r for r in records}
        self._by_name: dict[str, str] = {r.spec.name: r.id for r in self._records.values()}
        self._watchers: list[Watcher] = []
        self._waiters: dict[str, list[tuple[Predicate, asyncio.Future[Record | None]]]] = {}
        self.journal = journal
        if journal is not None:
            journal.attach(self.get, lambda: list(self._records.values()))
            self._watchers.append(journal.changed)

    async def durable(self) -> None:
        """Wait until every change of intent so far is on disk (no-op without a journal)."""
        if self.journal is not None:
            await self.journal.flushed()

    # -- reading -----------------------------------------------------------
    def get(self, container_id: str) -> Record | None:
        return self._records.get(container_id)

    def resolve(self, id_or_name: str) -> Record:
        """Find a record by stable id or by name, as requests may use either."""
        record = self._records.get(id_or_name)
        if record is None and id_or_name in self._by_name:
            record = self._records[self._by_name[id_or_name]]
        if record is None or record.desired is DesiredState.DELETED:
            raise UnknownContainer(id_or_name)
        return record

    def records(self) -> Iterable[Record]:
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    # -- writing intent ------------------------------------------------------
    def create(self, spec: ContainerSpec, desired: DesiredState = DesiredState.CREATED,
               code_path: str | None = None, container_id: str | None = None,
               code_revision: str | None = None) -> Record:
        owner = self._by_name.get(spec.name)
        if owner is not None:
            raise NameInUse(spec.name, owner)
        container_id = container_id or new_container_id()
        while container_id in self._records:
            container_id = new_container_id()
        record = Record(id=container_id, spec=spec, desired=desired, generation=1,
                        created_at=time.time(), code_path=code_path, code_revision=code_revision)
        self._records[container_id] = record
        self._by_name[spec.name] = container_id
        self._changed(record.id, record)
        return record

    def update(self, container_id: str, **changes: object) -> Record:
        """Change intent (desired state, spec, restart request): bumps the generation."""
        current = self._records.get(container_id)
        if current is None:
            raise UnknownContainer(container_id)
        record = replace(current, generation=current.generation + 1, **changes)  # type: ignore[arg-type]
        self._records[container_id] = record
        self._changed(container_id, record)
        return record

    def note(self, container_id: str, **facts: object) -> Record:
        """The controller's facts that must survive a manager restart (Record.restart_target, ended_runs).

        Journaled with the record, but not a change of intent: no new generation, and nobody is woken
        (the controller that writes them is already looking at the key). `durable()` covers them too.
        """
        current = self._records.get(container_id)
        if current is None:
            raise UnknownContainer(container_id)
        record = replace(current, **facts)  # type: ignore[arg-type]
        self._records[container_id] = record
        if self.journal is not None:
            self.journal.changed(container_id)
        return record

    def report(self, container_id: str, generation: int, error: ConvergeError | None) -> None:
        """Controller's write-back: generation converged, or the error it hit."""
        current = self._records.get(container_id)
        if current is None:
            return
        if error is None:
            status = RecordStatus(observed_generation=max(generation, current.status.observed_generation))
        else:
            status = replace(current.status, error=error, error_generation=generation)
        if status == current.status:
            return
        record = replace(current, status=status)
        self._records[container_id] = record
        self._notify_waiters(container_id, record)

    def remove(self, container_id: str) -> None:
        record = self._records.pop(container_id, None)
        if record is not None and self._by_name.get(record.spec.name) == container_id:
            del self._by_name[record.spec.name]
        self._changed(container_id, None)

    # -- watching ------------------------------------------------------------
    def has_waiters(self, container_id: str) -> bool:
        """Is a request handler waiting on this record? Then it reports failures itself."""
        return bool(self._waiters.get(container_id))

    def watch(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)

    async def wait_for(self, container_id: str, predicate: Predicate, timeout: float) -> Record | None:
        """Wait until `predicate(record)` holds (record None once removed)."""
        current = self._records.get(container_id)
        if predicate(current):
            return current
        future: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.setdefault(container_id, []).append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._waiters.get(container_id, [])
            if entry in waiters:
                waiters.remove(entry)
            if not waiters:
                self._waiters.pop(container_id, None)

    def _changed(self, container_id: str, record: Record | None) -> None:
        for watcher in self._watchers:
            watcher(container_id)
        self._notify_waiters(container_id, record)

    def _notify_waiters(self, container_id: str, record: Record | None) -> None:
        for predicate, future in list(self._waiters.get(container_id, ())):
            if not future.done() and predicate(record):
                future.set_result(record)
