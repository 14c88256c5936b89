"""The controller's facts kept with a record (Record.ended_runs, restart_target) survive a manager restart."""

from __future__ import annotations

import json
from pathlib import Path

from store import ContainerSpec, DesiredState, MemoryStore
from store.journal import Journal
from store.records import RestartTarget


async def test_noted_facts_are_journaled_without_a_new_generation(tmp_path: Path):
    journal = Journal(tmp_path)
    store = MemoryStore(journal.load(), journal)
    journal.start()
    woken: list[str] = []
    record = store.create(ContainerSpec(image="flow:latest", name="a"), DesiredState.RUNNING)
    store.watch(woken.append)
    updated = store.update(record.id, restart_requests=1)
    await store.durable(record.id, updated.generation)  # the controller only ever sees (and notes on) what is on disk
    noted = store.note(
        record.id, restart_target=RestartTarget(1, "d" * 64, 1700000000.123456), ended_runs=(("d" * 64, 1700000000.123456), ("e" * 64, None))
    )
    assert noted.generation == 2 and woken == [record.id], "not a change of intent: nobody is woken again"
    assert store.update(record.id, desired=DesiredState.STOPPED).ended_runs == noted.ended_runs, "intent keeps them"
    await store.durable()
    await journal.stop()

    again = {r.id: r for r in Journal(tmp_path).load()}[record.id]
    assert again.restart_requests == 1 and again.restart_target == noted.restart_target
    assert again.ended_runs == noted.ended_runs and again.desired is DesiredState.STOPPED


def test_a_journal_written_before_these_facts_existed_still_loads(tmp_path: Path):
    line = {
        "op": "put",
        "record": {
            "id": "abc123def456",
            "spec": {"image": "flow:latest", "name": "old"},
            "desired": "running",
            "generation": 3,
            "created_at": 1.0,
            "restart_requested_at": 5.0,
            "code_revision": None,
            "code_path": None,
        },
    }
    (tmp_path / "records.jsonl").write_text(json.dumps(line) + "\n")
    [record] = Journal(tmp_path).load()
    assert record.restart_requests == 0 and record.restart_target is None and record.ended_runs == ()
