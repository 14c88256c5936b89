"""How flowctl prints data: `-o table` (the default), `wide` (more columns), `json`, `yaml`.

json and yaml print the server's answer as it came (the client's models dumped), so scripts parse the
same fields as the API reference; tables pick columns per verb.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "wide", "json", "yaml")


def console(stderr: bool = False) -> Console:
    """A terminal's width when there is one; wide enough for every column when piped (no wrapping in files)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 240, stderr=stderr)


def plain(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return data
    return [plain(item) for item in data]


def emit(data: Any, fmt: str, columns: Sequence[tuple[str, str]], wide: Sequence[tuple[str, str]] = (), rows: Any = None) -> None:
    """Print `data` (a model or list of models) as `fmt`; tables show `columns` (+ `wide`) of `rows` (default `data`)."""
    if fmt == "json":
        print(json.dumps(plain(data), indent=2))
        return
    if fmt == "yaml":
        print(yaml.safe_dump(plain(data), sort_keys=False), end="")
        return
    items = rows if rows is not None else data
    items = [items] if isinstance(items, (BaseModel, dict)) else list(items)
    chosen = [*columns, *(wide if fmt == "wide" else ())]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, _ in chosen:
        table.add_column(title)
    for item in items:
        values = plain(item) if not isinstance(item, dict) else item
        table.add_row(*(cell(lookup(values, path)) for _, path in chosen))
    console().print(table)


def lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    return str(value)


def size(count: float | None) -> str:
    """Bytes as people read them (KiB, MiB, GiB)."""
    if not count:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return str(count)
