from __future__ import annotations

import json
from pathlib import Path

from store import ContainerSpec, DesiredState, MemoryStore
from store.journal import Journal


async def test_intent_survives_a_restart_and_a_torn_last_line(tmp_path: Path):
    journal = Journal(tmp_path)
    store = MemoryStore(journal.load(), journal)
    journal.start()
    kept = store.create(ContainerSpec(image="flow:latest", name="kept", command=("a", "b"), environment={"X": "1"}))
    store.update(kept.id, desired=DesiredState.RUNNING, code_revision="abc")
    gone = store.create(ContainerSpec(image="flow:latest", name="gone"))
    store.remove(gone.id)
    await store.durable()
    await journal.stop()
    with (tmp_path / "records.jsonl").open("a") as fh:
        fh.write('{"op": "put", "record": {"id": "torn')  # a crash in the middle of a write

    again = Journal(tmp_path)
    records = {r.id: r for r in again.load()}
    assert list(records) == [kept.id]
    restored = records[kept.id]
    assert restored.desired is DesiredState.RUNNING and restored.code_revision == "abc"
    assert restored.spec == kept.spec and restored.generation == 2
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [line["op"] for line in lines] == ["format", "put"], "load compacts the journal"


async def test_compaction_keeps_only_current_records(tmp_path: Path):
    journal = Journal(tmp_path, compact_every=5)
    store = MemoryStore(journal.load(), journal)
    journal.start()
    record = store.create(ContainerSpec(image="flow:latest", name="a"))
    for _ in range(20):
        store.update(record.id, desired=DesiredState.RUNNING)
        await store.durable()
    await journal.stop()
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) <= 6
    assert Journal(tmp_path).load()[0].generation == 21
