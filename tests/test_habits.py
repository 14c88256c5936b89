"""The house rules, checked with every test run so they cannot silently regress.

Lint and format (ruff), types (mypy on the three rooms that hold the logic), the one-way import
layers (import-linter: flow_manager -> api -> controller -> store -> flow_runtime, the runtime
standalone), small modules that say their job, and no bare `Any` where a real type exists.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "controller", "store", "flow_manager", "flow_runtime")
TYPED = ("store", "controller", "api")
MAX_LINES = 320  # "about 300": past it, a module is doing more than one job
# Signatures that take untyped wire data as it arrives (a client's JSON, python-engineio's internals) before
# validation gives it a type. Existing ones only: anything new gets a real type (or `object`).
WIRE_DATA = {
    "api/auth.py:refusal",
    "api/emitter.py:emit",
    "api/engineio_tuning.py:poll",
    "api/engineio_tuning.py:source_digest",
    "api/handlers/connection.py:connect",
    "api/handlers/connection.py:rejected",
    "api/packets.py:__init__",
    "api/packets.py:encode",
    "api/schemas.py:_depth",
}


def run(*command: str) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


def modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_ruff_lint() -> None:
    run(sys.executable, "-m", "ruff", "check", ".")


def test_ruff_format() -> None:
    run(sys.executable, "-m", "ruff", "format", "--check", ".")


def test_types() -> None:
    run(sys.executable, "-m", "mypy", *TYPED)


def test_import_layers() -> None:
    run(sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_is_small_and_says_its_job(path: Path) -> None:
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by job (at most {MAX_LINES})"
    tree = ast.parse(source)
    if path.name != "__init__.py" or lines > 10:
        assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no opening docstring saying its one job"


def test_no_bare_any_in_signatures() -> None:
    """`Any` inside a container (dict[str, Any] of JSON) is fine; a parameter or result typed plainly `Any` is not."""
    offenders = []
    for path in modules():
        if path.parts[len(ROOT.parts)] not in TYPED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                annotations = [a.annotation for a in arguments] + [node.returns]
                where = f"{path.relative_to(ROOT)}:{node.name}"
                if any(isinstance(a, ast.Name) and a.id == "Any" for a in annotations) and where not in WIRE_DATA:
                    offenders.append(f"{where} (line {node.lineno})")
    assert not offenders, "bare Any in signatures:\n" + "\n".join(offenders)
