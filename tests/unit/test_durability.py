"""The store and its journal: nothing reaches the controller before it is on disk, and a journal that cannot
write answers at once, withdraws the intent, says so once, and recovers by itself."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import store.journal as journal_module
from store import ContainerSpec, DesiredState, MemoryStore, Record
from store.durability import NotDurable
from store.journal import Journal


class Started:
    """A journal and its store, started, with the controller's watcher recording what it was woken for."""

    def __init__(self, directory: Path, retry_interval: float = 0.05) -> None:
        self.journal = Journal(directory, retry_interval=retry_interval)
        self.store = MemoryStore(self.journal.load(), self.journal)
        self.woken: list[str] = []
        self.store.watch(self.woken.append)
        self.journal.start()

    async def record(self, name: str = "a") -> Record:
        record = self.store.create(ContainerSpec(image="flow:latest", name=name))
        await self.store.durable(record.id, record.generation, timeout=5)
        self.woken.clear()
        return record


def on_disk(directory: Path) -> dict[str, Record]:
    return {r.id: r for r in Journal(directory).load()}


class Gate:
    """Holds the journal's writes (on its worker thread) until released: a slow disk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open, self.entered = threading.Event(), threading.Event()
        real = Journal._append

        def held(journal: Journal, data: bytes, lines: int) -> None:
            self.entered.set()
            self.open.wait(10)
            real(journal, data, lines)

        monkeypatch.setattr(Journal, "_append", held)


@pytest.fixture
def enospc(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """A full disk while `state["full"]`: every append fails as the kernel would fail it."""
    state = {"full": True}
    real = Journal._append

    def append(journal: Journal, data: bytes, lines: int) -> None:
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(journal, data, lines)

    monkeypatch.setattr(Journal, "_append", append)
    yield state


async def test_the_controller_is_woken_and_reads_a_change_only_once_it_is_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    started = Started(tmp_path)
    record = await started.record()
    gate = Gate(monkeypatch)
    changed = started.store.update(record.id, desired=DesiredState.RUNNING)
    await asyncio.to_thread(gate.entered.wait, 5)  # the write has begun, and is not finished
    assert started.woken == [], "the controller was woken for an intent not on disk"
    assert started.store.get(record.id) == record, "the controller would read an intent not on disk"
    assert started.store.intent(record.id) == changed and started.store.resolve(record.id) == changed
    gate.open.set()
    await started.store.durable(record.id, changed.generation, timeout=5)
    assert started.woken == [record.id] and started.store.get(record.id) == changed
    await started.journal.stop()


async def test_a_full_disk_withdraws_the_intent_answers_at_once_and_recovers(
    tmp_path: Path, enospc: dict[str, bool], caplog: pytest.LogCaptureFixture
):
    enospc["full"] = False
    started = Started(tmp_path)
    record = await started.record()
    enospc["full"] = True
    caplog.set_level(logging.INFO, logger="flow_manager.journal")
    loop = asyncio.get_running_loop()
    for _ in range(3):  # requests keep failing, each at once; the condition is logged once
        asked = loop.time()
        changed = started.store.update(record.id, desired=DesiredState.DELETED)
        with pytest.raises(NotDurable) as failure:
            await started.store.durable(record.id, changed.generation, timeout=5)
        assert loop.time() - asked < 1.0
        assert failure.value.details == {"reason": "state_not_writable", "path": str(tmp_path), "error": "No space left on device (ENOSPC)"}
        assert started.store.intent(record.id) == record, "withdrawn: the request's intent is not kept"
        assert started.store.get(record.id) == record and started.woken == []
    health = started.journal.health.snapshot()
    assert health["writable"] is False and health["errno"] == "ENOSPC" and health["failed_writes"] >= 3
    assert sum("is not writable" in r.message for r in caplog.records) == 1, caplog.text

    enospc["full"] = False  # space returns: the writer's retry notices without any new request
    for _ in range(200):
        if started.journal.health.writable:
            break
        await asyncio.sleep(0.01)
    assert started.journal.health.writable and sum("writable again" in r.message for r in caplog.records) == 1
    changed = started.store.update(record.id, desired=DesiredState.RUNNING)
    await started.store.durable(record.id, changed.generation, timeout=5)
    assert started.store.get(record.id) == changed and started.woken == [record.id]
    await started.journal.stop()
    assert on_disk(tmp_path)[record.id].desired is DesiredState.RUNNING
    assert on_disk(tmp_path)[record.id].generation == changed.generation


async def test_a_withdrawn_create_frees_its_name_and_leaves_nothing_on_disk(tmp_path: Path, enospc: dict[str, bool]):
    started = Started(tmp_path)
    record = started.store.create(ContainerSpec(image="flow:latest", name="never"))
    with pytest.raises(NotDurable):
        await started.store.durable(record.id, record.generation, timeout=5)
    assert started.store.intent(record.id) is None and started.store.intents() == []
    enospc["full"] = False
    again = started.store.create(ContainerSpec(image="flow:latest", name="never"))  # the name is free
    await started.store.durable(again.id, again.generation, timeout=5)
    await started.journal.stop()
    assert list(on_disk(tmp_path)) == [again.id]


async def test_any_exception_in_the_writer_answers_the_waiters_and_the_writer_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    started = Started(tmp_path)
    record = await started.record()
    real = journal_module.record_to_json
    broken = {"times": 1}

    def flaky(record: Record) -> dict[str, Any]:
        if broken["times"]:
            broken["times"] -= 1
            raise TypeError("a bug, not an OSError")
        return real(record)

    monkeypatch.setattr(journal_module, "record_to_json", flaky)
    changed = started.store.update(record.id, desired=DesiredState.RUNNING)
    with pytest.raises(NotDurable) as failure:
        await asyncio.wait_for(started.store.durable(record.id, changed.generation, timeout=5), 2)
    assert failure.value.reason == "journal_error" and "TypeError: a bug" in failure.value.details["error"]

    # A failure after the write (in the commit) must answer too, and not stop the writer.
    commit = started.journal._committed
    calls = {"n": 0}

    def failing_commit(batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("commit bug")
        commit(batch)

    started.journal._committed = failing_commit
    changed = started.store.update(record.id, desired=DesiredState.STOPPED)
    with pytest.raises(NotDurable):
        await asyncio.wait_for(started.store.durable(record.id, changed.generation, timeout=5), 2)
    assert started.store.get(record.id) == record and started.woken == []

    changed = started.store.update(record.id, desired=DesiredState.RUNNING)
    await asyncio.wait_for(started.store.durable(record.id, changed.generation, timeout=5), 2)
    assert started.store.get(record.id) == changed and started.journal.health.writable
    await started.journal.stop()
    assert on_disk(tmp_path)[record.id].generation == changed.generation


async def test_a_write_that_outlives_the_timeout_is_withdrawn_and_overwritten_when_it_lands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    started = Started(tmp_path)
    record = await started.record()
    gate = Gate(monkeypatch)
    changed = started.store.update(record.id, desired=DesiredState.DELETED)
    with pytest.raises(NotDurable) as failure:
        await started.store.durable(record.id, changed.generation, timeout=0.2)
    assert failure.value.reason == "state_not_writable" and "within 0.2 s" in failure.value.message
    assert started.store.intent(record.id) == record
    health = started.journal.health.snapshot()
    assert health["writable"] is False and health["last_error"] == "a write did not finish within 0.2 s", health
    gate.open.set()  # the late write lands: it is not applied, and the durable version goes back on disk
    await started.store.durable()
    await started.store.durable()
    assert started.store.get(record.id) == record and started.woken == []
    assert started.journal.health.writable
    await started.journal.stop()
    assert on_disk(tmp_path)[record.id].desired is DesiredState.CREATED


async def test_an_append_after_a_torn_write_starts_at_a_line_boundary(tmp_path: Path):
    journal = Journal(tmp_path)
    store = MemoryStore(journal.load(), journal)
    journal.start()
    record = store.create(ContainerSpec(image="flow:latest", name="a"))
    await store.durable()
    with (tmp_path / "records.jsonl").open("a") as fh:
        fh.write('{"op": "put", "record": {"id": "to')  # what a write cut short by a full disk leaves
    changed = store.update(record.id, desired=DesiredState.RUNNING)
    await store.durable()
    await journal.stop()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines), lines
    assert on_disk(tmp_path)[record.id].generation == changed.generation


async def test_the_directory_is_fsynced_after_the_journal_file_is_created_or_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    journal = Journal(tmp_path / "state", compact_every=3)
    store = MemoryStore(journal.load(), journal)
    assert calls == ["fsync dir", "fsync file", "replace", "fsync dir"], "new directory, new file: both durable"
    journal.start()
    record = store.create(ContainerSpec(image="flow:latest", name="a"))
    await store.durable()
    calls.clear()
    for _ in range(4):
        store.update(record.id, desired=DesiredState.RUNNING)
        await store.durable()
    assert "replace" in calls and calls[calls.index("replace") + 1] == "fsync dir", calls
    await journal.stop()


async def test_without_a_journal_a_change_reaches_the_controller_at_once() -> None:
    store = MemoryStore()
    woken: list[str] = []
    store.watch(woken.append)
    record = store.create(ContainerSpec(image="flow:latest", name="a"))
    assert woken == [record.id] and store.get(record.id) == record
    await store.durable(record.id, record.generation, timeout=0)


async def test_a_wait_for_a_record_removed_meanwhile_ends_at_once(tmp_path: Path):
    """A request waiting for its change to be on disk while the controller forgets the record (its deletion
    converged) had nothing left to wait for, yet waited out its timeout and marked the disk unwritable."""
    started = Started(tmp_path)
    record = await started.record()
    withdrawn = started.store.update(record.id, desired=DesiredState.DELETED)
    waiting = asyncio.ensure_future(started.store.durable(record.id, withdrawn.generation, timeout=5))
    await asyncio.sleep(0)
    started.store.remove(record.id)
    await asyncio.wait_for(waiting, 1)
    assert started.journal.health.writable
    await started.journal.stop()
