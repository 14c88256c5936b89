"""Reading the journal back at start, as data that may be damaged.

A disk error, a bad sector or a hand edit can leave anything in the file: bytes
that are not UTF-8, JSON that is not an object, records with fields of the
wrong type, nesting deep enough to exhaust the parser. Each line is one record
and stands alone, so a damaged line is skipped and reported (its byte offset
and why) and every other line is kept: a record is only dropped when its own
line is bad. A record whose fields do not have the types the manager writes is
damaged too: accepted, it would fail later in the controller, far from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypeVar

from store.records import ContainerSpec, DesiredState, Record, RestartTarget

T = TypeVar("T")
V = TypeVar("V")


class Damaged(ValueError):
    """A journal line that is well-formed JSON but not a record as the manager writes it."""


@dataclass(frozen=True)
class Skipped:
    offset: int  # byte offset of the line's start in the file
    reason: str


@dataclass
class Replay:
    records: dict[str, Record] = field(default_factory=dict)
    complete: int = 0  # bytes up to the end of the last complete line (after it: a torn write)
    skipped: list[Skipped] = field(default_factory=list)


def _expect(value: object, kind: type[T], what: str) -> T:
    """`value` (parsed JSON, untrusted) if it is a `kind` (a bool is no int here), else `Damaged`."""
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise Damaged(f"{what} is {type(value).__name__}")
    return value


def _optional_int(value: object, what: str) -> int | None:
    return None if value is None else _expect(value, int, what)


def _number(value: object, what: str) -> float:
    return float(_expect(value, float, what) if isinstance(value, float) else _expect(value, int, what))


def _mapping(value: object, what: str, values: type[V]) -> dict[str, V]:
    found = _expect(value, dict, what)
    return {_expect(key, str, what): _expect(item, values, f"{what}[{key!r}]") for key, item in found.items()}


def _spec(data: object) -> ContainerSpec:
    data = _expect(data, dict, "spec")
    command = data.get("command")
    if command is not None:
        command = tuple(_expect(part, str, "spec.command[]") for part in _expect(command, list, "spec.command"))
    return ContainerSpec(
        image=_expect(data["image"], str, "spec.image"),
        name=_expect(data["name"], str, "spec.name"),
        environment=_mapping(data.get("environment", {}), "spec.environment", str),
        volumes=_mapping(data.get("volumes", {}), "spec.volumes", str),
        ports=_mapping(data.get("ports", {}), "spec.ports", int),
        command=command or None,
        memory_limit=_optional_int(data.get("memory_limit"), "spec.memory_limit"),
        pids_limit=_optional_int(data.get("pids_limit"), "spec.pids_limit"),
    )


def record_from_json(data: object) -> Record:
    """A record as journal.record_to_json wrote it; `Damaged` (or KeyError) when it is not one."""
    data = _expect(data, dict, "record")
    target = data.get("restart_target")  # absent from journals written before it existed, as the next two
    if target is not None:
        target = _expect(target, dict, "restart_target")
        started = target.get("started_at")
        target = RestartTarget(
            int(_expect(target["request"], int, "restart_target.request")),
            None if target.get("docker_id") is None else _expect(target["docker_id"], str, "restart_target.docker_id"),
            None if started is None else _number(started, "restart_target.started_at"),
        )
    ended = []
    for run in _expect(data.get("ended_runs") or [], list, "ended_runs"):
        docker_id, started_at = _expect(run, list, "ended_runs[]")
        ended.append((_expect(docker_id, str, "ended_runs[].id"), None if started_at is None else _number(started_at, "ended_runs[].started")))
    code_revision, code_path = data.get("code_revision"), data.get("code_path")
    return Record(
        id=_expect(data["id"], str, "id"),
        spec=_spec(data["spec"]),
        desired=DesiredState(data["desired"]),
        generation=_expect(data["generation"], int, "generation"),
        created_at=_number(data["created_at"], "created_at"),
        code_revision=None if code_revision is None else _expect(code_revision, str, "code_revision"),
        code_path=None if code_path is None else _expect(code_path, str, "code_path"),
        restart_requests=_expect(data.get("restart_requests") or 0, int, "restart_requests"),
        restart_target=target,
        ended_runs=tuple(ended),
        trace_context=data["trace_context"] if isinstance(data.get("trace_context"), str) else None,
    )


def _apply(records: dict[str, Record], line: bytes) -> None:
    entry = _expect(json.loads(line.decode("utf-8")), dict, "line")
    op = entry.get("op")
    if op == "put":
        record = record_from_json(entry["record"])
        records[record.id] = record
    elif op == "remove":
        records.pop(_expect(entry["id"], str, "id"), None)
    elif op != "format":
        raise Damaged(f"unknown op {str(op)[:40]!r}")


def replay(data: bytes) -> Replay:
    """Every complete line applied in order; a damaged one skipped and noted with its offset."""
    result = Replay(complete=data.rfind(b"\n") + 1)
    offset = 0
    for line in data[: result.complete].split(b"\n")[:-1]:
        if line.strip():
            try:
                _apply(result.records, line)
            except (ValueError, KeyError, TypeError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                result.skipped.append(Skipped(offset, f"{type(exc).__name__}: {str(exc)[:200]}"))
        offset += len(line) + 1
    return result
