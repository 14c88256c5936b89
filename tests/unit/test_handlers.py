"""Request handlers against a real in-memory store and fakes of the controller's read side.

These cover what a handler answers by itself (states it reports, records that vanish while it awaits),
without a server: the integration tests drive the same handlers through a real Socket.IO server.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from api import payloads
from api.handlers import ApiSettings, Handlers, Route
from api.policy import RequestPolicy
from api.schemas import ListContainers, UpdateContainer
from controller.engine import EngineState, EngineWatch
from controller.events import ControllerError
from controller.observed import ABSENT, API_STATES
from controller.view import UNKNOWN, Observations
from store import ContainerSpec, DesiredState, MemoryStore
from store.code import CodeSnapshot

README = Path(__file__).resolve().parents[2] / "README.md"


class Emitter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str | None]] = []

    async def emit(self, event: str, payload: Any, to: str | None = None) -> None:
        self.sent.append((event, payload, to))


class SlowCodes:
    """A code store whose snapshot waits until the test lets it finish (a large code directory)."""

    def __init__(self) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def snapshot(self, code_path: str) -> CodeSnapshot:
        self.started.set()
        await self.release.wait()
        return CodeSnapshot(revision="r" * 12, files=1)

    async def retain(self, referenced: Callable[[], set[str]]) -> None:
        return None


def make_handlers(
    store: MemoryStore, codes: Any = None, code_root: Path | None = None, observed: dict[str, Any] | None = None
) -> tuple[Handlers, Emitter]:
    """Handlers whose controller has observed nothing but `observed` (key -> view.Seen-like)."""
    view = Observations(EngineState("fake"), wake=lambda key: None)
    view.keys.update(observed or {})
    emitter = Emitter()
    policy = RequestPolicy.build(code_roots=[str(code_root)] if code_root else [])
    sio = SimpleNamespace(
        always_connect=False,
        manager=SimpleNamespace(  # python-socketio's view of connections
            eio_sid_from_sid=lambda sid, namespace: None, is_connected=lambda sid, namespace: True, is_pre_connected=lambda sid, namespace: True
        ),
    )
    handlers = Handlers(
        sio,
        store,
        SimpleNamespace(),
        view,  # type: ignore[arg-type]
        SimpleNamespace(emitter=emitter),
        ApiSettings(request_timeout=0.5),  # type: ignore[arg-type]
        None,
        codes,
        policy=policy,
    )  # type: ignore[arg-type]
    return handlers, emitter


def documented_states() -> set[str]:
    """The states README.md's "## States" section lists (in backticks)."""
    section = README.read_text().split("\n## States\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", section)) - {"status", "state", "old_state", "new_state", "exited", "desired_state"}


async def test_list_reports_a_documented_state_for_a_record_docker_has_no_container_for_yet():
    store = MemoryStore()
    record = store.create(ContainerSpec(image="flow:latest", name="fresh"), DesiredState.CREATED)
    handlers, _ = make_handlers(store)
    listing = await handlers.list(ListContainers())
    [entry] = listing["containers"]
    assert entry["id"] == record.id
    # The container does not exist in Docker: the README's word for that, as get_container_status says it.
    assert entry["status"] == "deleted" and entry["desired_state"] == "created", entry
    assert entry["status"] in documented_states(), (entry["status"], documented_states())


def test_every_state_a_docker_container_can_be_reported_in_is_documented():
    assert {*API_STATES.values(), ABSENT, UNKNOWN} <= documented_states()


async def _update_while(vanish: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    store, codes = MemoryStore(), SlowCodes()
    (tmp_path / "code").mkdir()
    record = store.create(ContainerSpec(image="flow:latest", name="upd"), DesiredState.RUNNING)
    handlers, emitter = make_handlers(store, codes, tmp_path)
    handler = handlers._route("update_container", Route("container_updated", UpdateContainer, handlers.update))
    answer = asyncio.create_task(handler("sid1", {"container_id": "upd", "code_path": str(tmp_path / "code")}))
    await asyncio.wait_for(codes.started.wait(), 5)
    if vanish == "removed":  # the controller finished a delete: the record is gone
        store.remove(record.id)
    else:  # a delete request arrived: the record is on its way out
        store.update(record.id, desired=DesiredState.DELETED)
    codes.release.set()
    payload = await asyncio.wait_for(answer, 5)
    assert emitter.sent == [("error", payload, "sid1")]
    return record.id, payload


@pytest.mark.parametrize("vanish", ["removed", "deleted"])
async def test_update_of_a_container_deleted_while_its_code_is_read_is_container_not_found(vanish: str, tmp_path: Path):
    container_id, payload = await _update_while(vanish, tmp_path)
    assert payload["error_type"] == "container_not_found", payload
    assert payload["details"]["container_id"] == container_id, payload


def test_engine_outage_times_are_iso_8601_like_every_timestamp_beside_them():
    published: list[object] = []
    sink = SimpleNamespace(publish=lambda event, on_sent=None: published.append(event) or True)

    async def back() -> None:
        return None

    watch = EngineWatch(
        SimpleNamespace(),
        sink,
        docker_host="unix:///fake.sock",
        on_event=lambda e: None,  # type: ignore[arg-type]
        on_lost=lambda: None,
        on_back=back,
    )
    watch._lost("connection refused")
    error, status = (payloads.event(event) for event in published)
    assert error[0] == "error" and isinstance(published[0], ControllerError)
    assert status[0] == "engine_status"
    for payload, since in ((status[1], status[1]["since"]), (error[1], error[1]["details"]["since"])):
        assert isinstance(since, str), payload
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        assert abs(moment.timestamp() - watch.since) < 0.001
        assert isinstance(payload["timestamp"], str) and since.endswith("Z") and payload["timestamp"].endswith("Z")
    assert status[1]["since"] == error[1]["details"]["since"]
