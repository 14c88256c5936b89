"""A damaged journal: each bad line skipped and reported (count, byte offset), every other record kept."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

from store import ContainerSpec, DesiredState
from store.durability import StateDirError
from store.journal import Journal, record_to_json
from store.records import Record


def put(record_id: str, **spec: object) -> bytes:
    record = Record(record_id, ContainerSpec(image="flow:latest", name=record_id), DesiredState.RUNNING, 1, 1.0)
    data = record_to_json(record)
    data["spec"].update(spec)
    return json.dumps({"op": "put", "record": data}).encode() + b"\n"


DAMAGED = [
    b"[]\n",  # valid JSON, not an object
    b'{"op": "put", "record": {"id": "x\xff"}}\n',  # not UTF-8
    b"\xff\xfe\x00garbage\n",
    b"[" * 100_000 + b"\n",  # nesting deep enough to exhaust the parser
    put("badenv", environment="A=1"),  # fields of the wrong type would fail later, in the controller
    put("badport", ports={"80/tcp": "8080"}),
    put("badcmd", command=[1, 2]),
    b'{"op": "remove", "id": []}\n',
    b'{"op": "put", "record": 7}\n',
]


def test_each_damaged_line_is_skipped_with_its_offset_and_every_good_record_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [b'{"op": "format", "version": 1}\n', put("a")]
    offsets = []
    for bad in DAMAGED:
        offsets.append(sum(map(len, lines)))
        lines.append(bad)
    lines += [put("b"), b'{"op": "put", "rec']  # and a torn last line, as always
    original = b"".join(lines)
    (tmp_path / "records.jsonl").write_bytes(original)

    journal = Journal(tmp_path)
    with caplog.at_level(logging.ERROR, logger="flow_manager.journal"):
        records = journal.load()

    assert sorted(r.id for r in records) == ["a", "b"]
    assert [s.offset for s in journal.skipped] == offsets
    assert f"{len(DAMAGED)} damaged record(s) skipped" in caplog.text and f"byte {offsets[0]}" in caplog.text
    aside = list(tmp_path.glob("records.jsonl.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == original, "the file as it was is kept for the operator"
    assert sorted(r.id for r in Journal(tmp_path).load()) == ["a", "b"], "the compacted journal loads clean"


def test_a_state_directory_that_refuses_writes_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(self: Journal, records: list[Record]) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Journal, "_write_snapshot", read_only)
    with pytest.raises(StateDirError, match=f"state directory {tmp_path} cannot be used: Read-only file system"):
        Journal(tmp_path).load()


def test_a_full_disk_at_start_still_starts_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Journal, records: list[Record]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "_write_snapshot", full)
    journal = Journal(tmp_path)
    assert journal.load() == [] and not journal.health.writable
