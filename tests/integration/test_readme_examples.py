"""The README's examples run against a real server and engine, so the docs cannot drift from the code.

A Python block in README.md right after a `<!-- tested example: NAME -->` line is run here as written,
in its own process with the installed python-socketio; only the server's address and the `demo`
container names (made unique to this run) are replaced. An example reads the payload fields the README
names, so a renamed or dropped field fails it. Two checks keep the set complete: every extension event
that "Extensions to the reference" introduces ("`x` (request, answered by `y`)", "`x`
(server-initiated)") is used by an example, and every request the server routes is either the
reference's (docs/api_reference.md) or introduced there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import Server, unique_name

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ADDRESS = "http://127.0.0.1:8000"
EXAMPLE = re.compile(r"^<!-- tested example: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)^```", re.S | re.M)
INTRODUCED = re.compile(r"^\* `(?P<event>\w+)` \((?:request, answered by `(?P<answer>\w+)`|server-initiated)\)", re.M)
REFERENCE_EVENT = re.compile(r"\*\*(?:Response )?Event\*\*: `(\w+)`")
ROUTE = re.compile(r'"(\w+)": Route\(')


def examples() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in EXAMPLE.finditer(README.read_text()):
        assert match["name"] not in found, f"two README examples are named {match['name']}"
        found[match["name"]] = match["code"]
    return found


def extension_section() -> str:
    text = README.read_text()
    start = text.index("\n## Extensions to the reference\n")
    return text[start : text.index("\n## ", start + 1)]


def extension_events() -> dict[str, str | None]:
    """Each extension event the README introduces -> the event that answers it (None: server-initiated)."""
    return {m["event"]: m["answer"] for m in INTRODUCED.finditer(extension_section())}


def served_requests() -> set[str]:
    """Every request name the server routes, read from the code that registers them."""
    sources = [*ROOT.joinpath("api").rglob("*.py"), *ROOT.joinpath("flow_manager").glob("*.py")]
    return {name for path in sources for name in ROUTE.findall(path.read_text())}


def run_example(code: str, url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert ADDRESS in code, f"a tested example connects to {ADDRESS} (the test points it at its own server)"
    prefix = unique_name("readme")
    code = code.replace(ADDRESS, url).replace('"demo', f'"{prefix}-demo')
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_every_extension_event_has_a_tested_example_and_every_served_request_is_documented():
    introduced, tested = extension_events(), examples()
    assert {"get_metrics", "subscribe_messages", "engine_status"} <= set(introduced), introduced  # the parser still finds them
    for event in introduced:
        users = [name for name, code in tested.items() if f'"{event}"' in code]
        assert users, f"README introduces the extension event {event} but no tested example uses it"
    reference = set(REFERENCE_EVENT.findall((ROOT / "docs" / "api_reference.md").read_text()))
    assert {"create_container", "list_containers", "container_status"} <= reference
    undocumented = served_requests() - reference - set(introduced)
    assert not undocumented, f"the server serves requests README's Extensions do not introduce: {sorted(undocumented)}"


@pytest.mark.parametrize("name", sorted(set(examples()) - {"token"}))
def test_a_readme_example_runs_against_the_real_server(server: Server, name: str):
    done = run_example(examples()[name], server.url)
    assert done.returncode == 0, f"README example {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"README example {name} printed nothing"


def test_the_readme_token_example_connects_with_the_token_and_shows_why_it_was_refused(tmp_path: Path):
    server = Server(tmp_path)
    server.env["FLOW_MANAGER_TOKEN"] = "right-token-0123456789"
    server.start()
    try:
        code = examples()["token"]
        accepted = run_example(code, server.url, env={**server.env, "FLOW_MANAGER_TOKEN": "right-token-0123456789"})
        assert accepted.returncode == 0 and "'containers'" in accepted.stdout, (accepted.stdout, accepted.stderr[-2000:])
        refused = run_example(code, server.url, env={**server.env, "FLOW_MANAGER_TOKEN": "wrong"})
        assert refused.returncode == 1, (refused.stdout, refused.stderr[-2000:])
        assert refused.stdout.strip() == "refused: authentication failed: wrong token", refused.stdout
    finally:
        server.stop()
