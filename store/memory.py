"""In-memory store of desired-state records.

Single-threaded by design: every method runs on the event loop and none awaits, so a read-modify-write is atomic.

Two views of each record. The *intent* is the latest change a request made
(requests read and change it: `resolve`, `intent`, `intents`, `create`,
`update`). The *record* proper is the last version on disk (`get`,
`records`): the controller reads only that, and its watchers are woken for a
key only once a change is durable, so it never acts on an intent a restart
would undo. A change the journal cannot write is withdrawn: the intent goes
back to the durable version and whoever awaits `durable()` gets `NotDurable`.
Without a journal both views are one. Waiters let a request handler await
the moment its intent has been converged or has failed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Iterable

from store.durability import NotDurable
from store.records import (
    ContainerSpec,
    ConvergeError,
    DesiredState,
    Record,
    RecordStatus,
    new_container_id,
)

if TYPE_CHECKING:
    from store.journal import Journal, Version

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
        self._records: dict[str, Record] = {r.id: r for r in records}  # durable: what the controller sees
        self._intents: dict[str, Record] = dict(self._records)  # latest: what requests see and change
        self._by_name: dict[str, str] = {r.spec.name: r.id for r in self._intents.values()}
        self._staged = 0  # numbers every staged change, so a withdrawn one is never mistaken for a later one
        self._intent_seq: dict[str, int] = {}
        self._durable_seq: dict[str, int] = {}
        self._withdrawn: dict[str, int] = {}  # key -> its last staging number that was withdrawn
        self._watchers: list[Watcher] = []
        self._waiters: dict[str, list[tuple[Predicate, asyncio.Future[Record | None]]]] = {}
        self._durable_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.journal = journal
        if journal is not None:
            journal.attach(self._pending, self.intents, self._committed, self._discarded)

    async def durable(self, container_id: str | None = None, generation: int = 0, timeout: float | None = None) -> None:
        """Wait until this generation of the record is on disk (no-op without a journal).

        Raises NotDurable when it was withdrawn: the write failed, or did not finish within `timeout`
        (then it is withdrawn here). Without a key: until every change so far was written or refused.
        """
        if self.journal is None:
            return
        if container_id is None:
            await self.journal.flushed()
            return
        committed = self._records.get(container_id)
        if committed is not None and committed.generation >= generation:
            return
        intent = self._intents.get(container_id)
        if intent is None or intent.generation < generation:  # withdrawn with an earlier change of this record
            raise self.journal.health.error()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (generation, future)
        self._durable_waiters.setdefault(container_id, []).append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            error = self.journal.health.timed_out(timeout or 0)
            self.withdraw(container_id, error)
            raise error from None
        finally:
            waiters = self._durable_waiters.get(container_id, [])
            if entry in waiters:
                waiters.remove(entry)
            if not waiters:
                self._durable_waiters.pop(container_id, None)

    # -- reading -----------------------------------------------------------
    def get(self, container_id: str) -> Record | None:
        """The durable version of a record: what the controller acts on."""
        return self._records.get(container_id)

    def intent(self, container_id: str) -> Record | None:
        """The latest version of a record, durable or not yet."""
        return self._intents.get(container_id)

    def resolve(self, id_or_name: str) -> Record:
        """Find a record's latest intent by stable id or by name, as requests may use either."""
        record = self._intents.get(id_or_name)
        if record is None and id_or_name in self._by_name:
            record = self._intents[self._by_name[id_or_name]]
        if record is None or record.desired is DesiredState.DELETED:
            raise UnknownContainer(id_or_name)
        return record

    def records(self) -> Iterable[Record]:
        """Every durable record."""
        return list(self._records.values())

    def intents(self) -> list[Record]:
        """Every record's latest intent (what the journal's snapshot holds)."""
        return list(self._intents.values())

    def __len__(self) -> int:
        return len(self._records)

    # -- writing intent ------------------------------------------------------
    def create(
        self,
        spec: ContainerSpec,
        desired: DesiredState = DesiredState.CREATED,
        code_path: str | None = None,
        container_id: str | None = None,
        code_revision: str | None = None,
        trace_context: str | None = None,
    ) -> Record:
        owner = self._by_name.get(spec.name)
        if owner is not None:
            raise NameInUse(spec.name, owner)
        container_id = container_id or new_container_id()
        while container_id in self._intents or container_id in self._records:
            container_id = new_container_id()
        record = Record(
            id=container_id,
            spec=spec,
            desired=desired,
            generation=1,
            created_at=time.time(),
            code_path=code_path,
            code_revision=code_revision,
            trace_context=trace_context,
        )
        self._by_name[spec.name] = container_id
        self._stage(container_id, record)
        return record

    def update(self, container_id: str, **changes: object) -> Record:
        """Change intent (desired state, spec, restart request): bumps the generation."""
        current = self._intents.get(container_id)
        if current is None:
            raise UnknownContainer(container_id)
        record = replace(current, generation=current.generation + 1, **changes)  # type: ignore[arg-type]
        self._stage(container_id, record)
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
        intent = self._intents.get(container_id)
        if intent is not None:  # the latest intent is what the journal writes: it carries the facts too
            self._intents[container_id] = record if intent is current else replace(intent, **facts)  # type: ignore[arg-type]
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
        intent = self._intents.get(container_id)
        if intent is not None:
            self._intents[container_id] = record if intent is current else replace(intent, status=status)
        self._notify_waiters(container_id, self._intents.get(container_id))

    def remove(self, container_id: str) -> None:
        """The controller forgets a record whose deletion converged (nothing left to wait for)."""
        record = self._intents.get(container_id) or self._records.get(container_id)
        self._records.pop(container_id, None)
        if record is not None and self._by_name.get(record.spec.name) == container_id:
            del self._by_name[record.spec.name]
        self._stage(container_id, None)
        for _, future in self._durable_waiters.pop(container_id, ()):  # nothing of it is left to make durable
            if not future.done():
                future.set_result(None)
        if self.journal is not None:
            self._wake(container_id)

    def withdraw(self, container_id: str, error: NotDurable) -> None:
        """Give up every change of this record not on disk: back to the durable version, waiters told why."""
        self._withdrawn[container_id] = self._intent_seq.get(container_id, 0)
        self._intent_seq[container_id] = self._durable_seq.get(container_id, 0)
        durable, intent = self._records.get(container_id), self._intents.get(container_id)
        if intent is not None and self._by_name.get(intent.spec.name) == container_id:
            del self._by_name[intent.spec.name]
        if durable is None:
            self._intents.pop(container_id, None)
        else:
            self._intents[container_id] = durable
            self._by_name[durable.spec.name] = container_id
        floor = durable.generation if durable is not None else 0
        for generation, future in self._durable_waiters.get(container_id, ()):
            if generation > floor and not future.done():
                future.set_exception(error)
        if intent is not durable:
            self._notify_waiters(container_id, durable)

    # -- the journal's side ------------------------------------------------------
    def _stage(self, container_id: str, record: Record | None) -> None:
        self._staged += 1
        self._intent_seq[container_id] = self._staged
        if record is None:
            self._intents.pop(container_id, None)
        else:
            self._intents[container_id] = record
        if self.journal is None:
            self._durable_seq[container_id] = self._staged
            if record is None:
                self._records.pop(container_id, None)
            else:
                self._records[container_id] = record
            self._wake(container_id)
        else:
            self.journal.changed(container_id)
        self._notify_waiters(container_id, record)

    def _pending(self, container_id: str) -> "Version":
        return self._intents.get(container_id), self._intent_seq.get(container_id, 0)

    def _committed(self, batch: dict[str, "Version"]) -> None:
        """A batch is on disk: its versions become what the controller sees."""
        for key, (record, seq) in batch.items():
            newer = seq > self._durable_seq.get(key, 0)  # else: a retry wrote the durable version again
            if newer and seq <= self._withdrawn.get(key, 0):
                # Written after all, but its request was told it failed: put the current version back on disk.
                if self.journal is not None:
                    self.journal.changed(key)
                continue
            if newer:
                self._durable_seq[key] = seq
                if record is None or key not in self._intents:
                    self._records.pop(key, None)
                else:
                    known = self._records.get(key) or self._intents[key]
                    # The controller's write-backs (status) and facts (note) are newest in memory: a batch taken
                    # before they were made must not undo them.
                    self._records[key] = replace(record, status=known.status, ended_runs=known.ended_runs, restart_target=known.restart_target)
                    for generation, future in self._durable_waiters.get(key, ()):
                        if generation <= record.generation and not future.done():
                            future.set_result(None)
                self._wake(key)
            if record is None and key not in self._intents:  # its removal is on disk: nothing left to track
                for table in (self._intent_seq, self._durable_seq, self._withdrawn):
                    table.pop(key, None)

    def _discarded(self, keys: Iterable[str], error: NotDurable) -> None:
        for key in keys:
            self.withdraw(key, error)

    # -- watching ------------------------------------------------------------
    def has_waiters(self, container_id: str) -> bool:
        """Is a request handler waiting on this record? Then it reports failures itself."""
        return bool(self._waiters.get(container_id))

    def watch(self, watcher: Watcher) -> None:
        """Be told the key of every durable change (the controller's wake-up)."""
        self._watchers.append(watcher)

    async def wait_for(self, container_id: str, predicate: Predicate, timeout: float) -> Record | None:
        """Wait until `predicate(intent)` holds (None once removed)."""
        current = self._intents.get(container_id)
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

    def _wake(self, container_id: str) -> None:
        for watcher in self._watchers:
            watcher(container_id)

    def _notify_waiters(self, container_id: str, record: Record | None) -> None:
        for predicate, future in list(self._waiters.get(container_id, ())):
            if not future.done() and predicate(record):
                future.set_result(record)
