"""Fuzzing every event over a real connection: hostile payloads cost one validation_error each, never more.

Every payload hypothesis builds here is invalid by construction (a wrong type, an unknown field, a name
Docker would refuse, a path or port the policy refuses, a message too deep or too big, binary data, ...).
The test asserts that the server stays up, that each request is answered by exactly one `error` event
of type `validation_error` (and its acknowledgement), and that Docker never sees a container of this
manager created or changed.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import aiodocker
import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.schemas import ENV_NAME_RE, NAME_RE
from controller import labels
from tests.integration.harness import Server, expect_quiet_sync

REQUEST_LIMIT = 16_384
REFS = ("start_container", "stop_container", "restart_container", "delete_container", "get_container_status")
EXAMPLES = 400


@pytest.fixture(scope="module")
def fuzz_server(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz"), "--client-rate-limit", "0", "--code-roots", "", "--max-request-bytes", str(REQUEST_LIMIT))
    srv.start()
    yield srv
    srv.stop()
    leaked = docker_lines("ps", "-aq", "--filter", f"label={labels.INSTANCE}={srv.instance}")
    if leaked:  # only after a failure: whatever a valid request slipped through created
        docker_lines("rm", "-f", *leaked)


class Recorder:
    """A synchronous python-socketio client (hypothesis drives plain functions) that keeps every event."""

    def __init__(self, url: str) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.sio.on("*", self._record)
        self.sio.connect(url, transports=["websocket"], wait_timeout=10)

    def _record(self, event: str, data: Any = None) -> None:
        with self.lock:
            self.events.append((event, data))

    def count(self, event: str | None = None) -> int:
        with self.lock:
            return sum(1 for name, _ in self.events if event is None or name == event)


# -- building blocks ------------------------------------------------------------------------------------
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "-rf",
        "../../etc/passwd",
        "/",
        "/proc/self/root",
        "a\x00b",
        "\ud800",
        "🙂" * 3,
        "$(reboot)",
        "`id`",
        "flow:latest; rm -rf /",
        "%s%n%x",
        "<script>alert(1)</script>",
        "x" * 300,
        "\n\r\t",
        "null",
        "NaN",
        "__proto__",
        "constructor",
        "A=B",
        "'; DROP TABLE",
        "\\\\?\\C:\\",
        "flow:latest\n",
        "FLOW:LATEST",
    ]
)
TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
ANY = st.one_of(JSON, st.binary(max_size=64))
NOT_A_DICT = ANY.filter(lambda v: not isinstance(v, dict))
NOT_A_STR = ANY.filter(lambda v: not isinstance(v, str))
NOT_AN_INT = ANY.filter(lambda v: not isinstance(v, int) or isinstance(v, bool))
ABS_PATH = st.one_of(
    st.sampled_from(["/", "/etc", "/proc", "/var/run/docker.sock", "/home", "/tmp/x", "/root/.ssh"]),
    st.text(alphabet="abc/._-", max_size=20).map(lambda s: "/" + s),
)
BAD_NAME = TEXT.filter(lambda s: not re.match(NAME_RE, s))
BAD_REF = st.one_of(NOT_A_STR, TEXT.filter(lambda s: not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", s)))
BAD_ENV_NAME = TEXT.filter(lambda s: not ENV_NAME_RE.match(s))
OVERSIZED = st.integers(REQUEST_LIMIT + 1, 4 * REQUEST_LIMIT).map(lambda n: "x" * n)


def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"n": value}
    return value


DEEP = st.integers(34, 120).map(nested)


def with_extra(base: dict[str, Any], allowed: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(TEXT.filter(lambda k: k not in allowed), ANY).map(lambda kv: {**base, kv[0]: kv[1]})


def replaced(base: dict[str, Any], field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return values.map(lambda v: {**base, field: v})


CREATE_FIELDS = {"image", "name", "environment", "volumes", "ports", "command", "code_path", "memory_limit", "pids_limit"}
CREATE = {"image": "flow:latest", "name": "fuzz-never-created"}
BAD_CREATE = st.one_of(
    NOT_A_DICT,
    with_extra(CREATE, CREATE_FIELDS),
    st.just({"name": "no-image"}),
    replaced(
        CREATE,
        "image",
        st.one_of(NOT_A_STR, TEXT.filter(lambda s: s != "flow:latest" and (not s or s != s.lower() or any(c in s for c in " \x00;$`<>\n\\")))),
    ),
    replaced(CREATE, "name", st.one_of(NOT_A_STR.filter(lambda v: v is not None), BAD_NAME)),  # None: a default name
    replaced(
        CREATE,
        "environment",
        st.one_of(
            NOT_A_DICT,
            st.dictionaries(BAD_ENV_NAME, st.text(), min_size=1),
            st.dictionaries(st.just("GOOD"), NOT_A_STR, min_size=1),
            st.just({"GOOD": "a\x00b"}),
        ),
    ),
    replaced(CREATE, "volumes", st.one_of(NOT_A_DICT, st.dictionaries(ABS_PATH, ABS_PATH, min_size=1), st.dictionaries(TEXT, ANY, min_size=1))),
    replaced(
        CREATE,
        "ports",
        st.one_of(
            NOT_A_DICT,
            st.dictionaries(
                st.sampled_from(["80", "8080/tcp", "53/udp"]), st.one_of(NOT_AN_INT, st.integers(-10, 1023), st.integers(65536, 2**40)), min_size=1
            ),
            st.dictionaries(TEXT.filter(lambda k: not re.fullmatch(r"\d{1,5}(/(tcp|udp|sctp))?", k)), st.integers(1024, 65535), min_size=1),
        ),
    ),
    replaced(
        CREATE,
        "command",
        st.one_of(
            NOT_A_DICT.filter(lambda v: not isinstance(v, list) and v is not None), st.lists(NOT_A_STR, min_size=1, max_size=3), st.just(["a\x00"])
        ),
    ),
    replaced(CREATE, "code_path", st.one_of(NOT_A_STR.filter(lambda v: v is not None), ABS_PATH, TEXT)),
    replaced(
        CREATE,
        "memory_limit",
        st.one_of(NOT_AN_INT.filter(lambda v: v is not None), st.integers(max_value=(6 << 20) - 1), st.integers(min_value=(4 << 30) + 1)),
    ),
    replaced(CREATE, "pids_limit", st.one_of(NOT_AN_INT.filter(lambda v: v is not None), st.integers(max_value=0), st.integers(min_value=4097))),
    replaced(CREATE, "environment", OVERSIZED.map(lambda s: {"BIG": s})),
)
REF = {"container_id": "abc123def456"}
BAD_REF_REQUEST = st.one_of(NOT_A_DICT, st.just({}), replaced(REF, "container_id", BAD_REF), with_extra(REF, {"container_id"}))
BAD_UPDATE = st.one_of(
    BAD_REF_REQUEST,
    st.just(REF),
    replaced(REF, "code_path", st.one_of(NOT_A_STR, ABS_PATH, TEXT)),
    st.tuples(BAD_REF, ABS_PATH).map(lambda t: {"container_id": t[0], "code_path": t[1]}),
    with_extra({**REF, "code_path": "/x"}, {"container_id", "code_path"}),
)
BAD_MESSAGE = st.one_of(
    BAD_REF_REQUEST,
    replaced(REF, "message", NOT_A_DICT),
    st.just(REF),
    replaced(REF, "message", DEEP),
    replaced(REF, "message", OVERSIZED.map(lambda s: {"data": s})),
    replaced(REF, "message", st.sampled_from(["flow.reload", "flow.ping", "flow.", "flow.anything"]).map(lambda c: {"command": c})),
    replaced(REF, "message", st.sampled_from([float("nan"), float("inf"), b"\x00\x01"]).map(lambda v: {"v": v})),
    with_extra({**REF, "message": {"command": "ping"}}, {"container_id", "message"}),
)
BAD_LIST = st.one_of(NOT_A_DICT.filter(lambda v: v is not None), st.dictionaries(TEXT, ANY, min_size=1))
BAD_SUBSCRIBE = st.one_of(  # the subscribe_messages extension
    NOT_A_DICT,
    replaced({"container_ids": None}, "container_ids", ANY.filter(lambda v: v is not None and not isinstance(v, list))),
    st.lists(BAD_REF, min_size=1, max_size=3).map(lambda refs: {"container_ids": refs}),
    st.just({"container_ids": ["abc123def456"] * 1001}),
    with_extra({"container_ids": None}, {"container_ids"}),
)
UNKNOWN_EVENT = TEXT.filter(
    lambda e: (
        e
        not in {
            *REFS,
            "create_container",
            "update_container",
            "send_message",
            "list_containers",
            "subscribe_messages",
            "flow_manager.rejected",
            "connect",
            "disconnect",
            "connect_error",
            "message",
        }
        and e.strip() != ""
    )
)

REQUESTS = st.one_of(
    st.tuples(st.just("create_container"), BAD_CREATE),
    st.tuples(st.sampled_from(REFS), BAD_REF_REQUEST),
    st.tuples(st.just("update_container"), BAD_UPDATE),
    st.tuples(st.just("send_message"), BAD_MESSAGE),
    st.tuples(st.just("list_containers"), BAD_LIST),
    st.tuples(st.just("subscribe_messages"), BAD_SUBSCRIBE),
    st.tuples(UNKNOWN_EVENT, ANY),
    st.tuples(st.sampled_from(["connect", "disconnect"]), ANY),  # the connection handlers' names
    st.tuples(st.sampled_from(["create_container", "list_containers", "start_container"]), st.tuples(ANY, ANY)),  # two arguments
)


def docker_lines(*args: str) -> list[str]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_hostile_payloads_to_every_event_cost_one_validation_error_each(fuzz_server: Server):
    started = int(time.time()) - 1
    client = Recorder(fuzz_server.url)
    sent: list[tuple[str, Any]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck))
    @given(REQUESTS)
    def one_request(request: tuple[str, Any]) -> None:
        event, payload = request
        before = client.count("error")
        reply = client.sio.call(event, payload, timeout=15)
        sent.append(request)
        assert isinstance(reply, dict) and reply.get("error_type") == "validation_error", (request, reply)
        assert isinstance(reply["details"].get("field"), str) and reply["message"], reply
        assert client.count("error") == before + 1, (request, reply)

    t0 = time.monotonic()
    try:
        one_request()
        elapsed = time.monotonic() - t0
        expect_quiet_sync(client.count, 0.5, what="every request was answered once; nothing may follow")
        assert client.count("error") == len(sent)
        assert client.count() - client.count("connected") == len(sent), "nothing but one error per request"
        assert fuzz_server.proc is not None and fuzz_server.proc.poll() is None
        assert client.sio.call("list_containers", {}, timeout=10)["count"] == 0
    finally:
        client.sio.disconnect()
    label = f"label={labels.INSTANCE}={fuzz_server.instance}"
    assert docker_lines("ps", "-a", "-q", "--filter", label) == []
    assert docker_lines("events", "--since", str(started), "--until", str(int(time.time()) + 1), "--filter", label, "--format", "{{json .}}") == []
    print(
        f"\nfuzz: {len(sent)} hostile requests in {elapsed:.1f} s "
        f"({len({e for e, _ in sent})} distinct events), all answered with one validation_error"
    )
    assert "Traceback" not in Path(fuzz_server.log_path).read_text(errors="replace")


def test_the_fuzz_strategies_only_build_invalid_requests():
    """Guard against a strategy drifting into valid requests (which would make the fuzz test lie)."""
    from pydantic import ValidationError

    from api.policy import RequestPolicy
    from api.schemas import ContainerRef, CreateContainer, ListContainers, SendMessage, SubscribeMessages, UpdateContainer

    models = {
        "create_container": CreateContainer,
        "update_container": UpdateContainer,
        "send_message": SendMessage,
        "list_containers": ListContainers,
        "subscribe_messages": SubscribeMessages,
        **{e: ContainerRef for e in REFS},
    }
    policy = RequestPolicy.build()

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(REQUESTS)
    def invalid(request: tuple[str, Any]) -> None:
        event, payload = request
        if event not in models or isinstance(payload, tuple) or _has_bytes(payload) or len(json.dumps(payload, default=str)) > REQUEST_LIMIT:
            return  # answered before any model: unknown event, two arguments, binary, oversized
        try:
            model = models[event].model_validate(payload)
        except ValidationError:
            return
        if isinstance(model, CreateContainer):
            with pytest.raises(ValueError):
                policy.admit_create(model)
        elif isinstance(model, UpdateContainer):
            with pytest.raises(ValueError):
                policy.code_path(model.code_path)
        else:
            raise AssertionError(f"valid request generated: {request}")

    invalid()


def _has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    return False
