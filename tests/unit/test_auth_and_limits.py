"""Connect authentication, the start-up refusals, and the per-client rate limit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from api.auth import ConnectAuth, host_of, is_loopback
from api.handlers import ApiSettings, Handlers
from api.limits import RateLimiter
from controller.engine import EngineState
from controller.view import Observations
from flow_manager.config import Settings
from flow_manager.security import SecurityConfigError, binds_loopback_only, configure, cors_origins, port_range

LOCAL = {"HTTP_HOST": "127.0.0.1:8000"}


def test_a_token_must_match_exactly():
    auth = ConnectAuth(token="s3cret-token-value")
    assert auth.refusal(LOCAL, {"token": "s3cret-token-value"}) is None
    for offered in (
        None,
        {},
        "s3cret-token-value",
        {"token": "wrong"},
        {"token": "s3cret-token-valu"},
        {"token": 12},
        {"token": "s3cret-token-value "},
        {"token": "é\udcff"},
        [1],
        {"Token": "x"},
    ):
        refusal = auth.refusal(LOCAL, offered)
        assert refusal and "s3cret" not in refusal, offered
    assert auth.refusal({"HTTP_HOST": "evil.example"}, {"token": "s3cret-token-value"}) is None  # token decides
    assert "s3cret" not in repr(auth)


def test_without_a_token_only_loopback_host_names_connect():
    auth = ConnectAuth()
    for host in ("127.0.0.1:8000", "localhost:1", "[::1]:8000", "LOCALHOST", "app.localhost:80", "127.1.2.3"):
        assert auth.refusal({"HTTP_HOST": host}, None) is None, host
    for host in ("evil.example:8000", "10.0.0.1", "[2001:db8::1]:80", "127.0.0.1.evil.example"):
        assert auth.refusal({"HTTP_HOST": host}, None), host
    assert ConnectAuth(loopback_hosts_only=False).refusal({"HTTP_HOST": "evil.example"}, None) is None


def test_loopback_recognition():
    assert is_loopback("::1") and is_loopback("127.0.0.1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.com")
    assert host_of("[::1]:80") == "::1" and host_of("a:1") == "a" and host_of("::1") == "::1"
    assert binds_loopback_only("127.0.0.1") and binds_loopback_only("localhost")
    assert not binds_loopback_only("0.0.0.0") and not binds_loopback_only("") and not binds_loopback_only("::")


def settings(**changes: object) -> Settings:
    return dataclasses.replace(Settings(), **changes)


def test_a_public_address_needs_a_token_or_insecure(tmp_path: Path):
    with pytest.raises(SecurityConfigError, match="without a token"):
        configure(settings(host="0.0.0.0"))
    assert configure(settings(host="0.0.0.0", insecure=True)).auth.token is None
    assert configure(settings(host="0.0.0.0", token="t" * 32)).auth.token == "t" * 32
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456789\n")
    assert configure(settings(host="0.0.0.0", token_file=str(token_file))).auth.token == "from-a-file-0123456789"
    token_file.write_text("\n")
    with pytest.raises(SecurityConfigError, match="empty"):
        configure(settings(token_file=str(token_file)))
    with pytest.raises(SecurityConfigError, match="cannot read"):
        configure(settings(token_file=str(tmp_path / "missing")))
    assert configure(settings(token="short")).warnings
    assert "token=" not in repr(settings(token="abc"))


def test_inconsistent_limits_refuse_to_start():
    with pytest.raises(SecurityConfigError, match="default-memory-limit"):
        configure(settings(default_memory_limit=8 << 30))
    with pytest.raises(SecurityConfigError, match="default-pids-limit"):
        configure(settings(default_pids_limit=0))
    with pytest.raises(SecurityConfigError, match="host-port-range"):
        port_range("2000-1000")
    with pytest.raises(SecurityConfigError, match="host-port-range"):
        port_range("x")
    assert port_range("1-65535") == (1, 65535)


def test_cors_defaults_to_same_origin():
    assert cors_origins("") is None
    assert cors_origins("*") == "*"
    assert cors_origins("https://ui.example, http://localhost:3000") == ["https://ui.example", "http://localhost:3000"]


def test_policy_forbids_the_managers_own_directories(tmp_path: Path):
    policy = configure(
        settings(
            state_dir=str(tmp_path / "state"), socket_dir=str(tmp_path / "sock"), docker_host="unix:///custom/docker.sock", volume_roots=str(tmp_path)
        )
    ).policy
    assert {str(tmp_path / "state"), str(tmp_path / "sock"), "/custom/docker.sock"} <= set(policy.forbidden)
    assert policy.volume_roots == (str(tmp_path),) and policy.reserved_ports == {8000}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_allows_a_burst_then_the_sustained_rate():
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5
    assert limiter.take("a") == pytest.approx(0.1)
    assert limiter.take("b") == 0.0  # per client
    clock.now += 0.25  # 2.5 tokens back
    assert [limiter.take("a") == 0.0 for _ in range(3)] == [True, True, False]
    clock.now += 100
    assert sum(limiter.take("a") == 0.0 for _ in range(10)) == 5  # the bucket never holds more than the burst
    limiter.forget("a")
    assert limiter.take("a") == 0.0
    assert RateLimiter(rate=0, burst=1).take("x") == 0.0  # disabled


def test_the_burst_is_the_whole_allowance_at_once_not_extra_on_top_of_the_rate():
    """README, --client-rate-burst: rate 5, burst 5, twelve requests at once: five go through, not ten."""
    clock = Clock()
    limiter = RateLimiter(rate=5, burst=5, clock=clock)
    assert sum(limiter.take("a") == 0.0 for _ in range(12)) == 5
    clock.now += 1.0  # one second refills the rate, never more than the burst
    assert sum(limiter.take("a") == 0.0 for _ in range(12)) == 5


def test_buckets_of_clients_never_forgotten_are_pruned_once_refilled_and_only_then():
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=5, clock=clock)  # a spent token is back after 1 s, all five after 5 s
    assert [limiter.take("drained") for _ in range(5)] == [0.0] * 5  # empty: must survive every pruning
    for n in range(6000):  # sessions that ended without the limiter hearing of it, 2000 per second
        limiter.take(f"gone-{n}")
        clock.now += 0.0005
    assert limiter.held <= 4100  # pruned as they came: a bucket back to full is the same as none
    assert [limiter.take("drained") > 0 for _ in range(4)] == [False, False, False, True]  # 3 s: 3 tokens back
    assert limiter.take("gone-5999") == 0.0 and limiter.held > 1000  # the recent ones are still there


# -- the API's per-connection state: what python-socketio calls, and what a client can only forge ---------------
class FakeManager:
    """python-socketio's view of the sids: joining (in the connect handler), connected, leaving."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # sid -> Engine.IO session
        self.joining: set[str] = set()
        self.leaving: set[str] = set()

    def eio_sid_from_sid(self, sid: str, namespace: str) -> str | None:
        return self.sessions.get(sid)

    def is_pre_connected(self, sid: str, namespace: str) -> bool:
        return sid in self.joining

    def is_connected(self, sid: str, namespace: str) -> bool:
        return sid in self.sessions and sid not in self.joining | self.leaving


class FakeSio:
    def __init__(self) -> None:
        self.manager = FakeManager()
        self.always_connect = False  # as the manager's server: the connect handler runs before the sid joins
        self.eio = SimpleNamespace(sockets={"e1": SimpleNamespace(closing=False, closed=False)})
        self.emitted: list[tuple[str, object]] = []

    async def emit(self, event: str, data: object = None, to: str | None = None) -> None:
        self.emitted.append((event, to))


def api(sio: FakeSio, clock: Clock) -> tuple[Handlers, SimpleNamespace]:
    broadcaster = SimpleNamespace(clients=set(), forgotten=[])
    broadcaster.forget = broadcaster.forgotten.append
    view = Observations(EngineState("x"), wake=lambda key: None)
    handlers = Handlers(
        sio,
        None,
        None,
        view,
        broadcaster,
        ApiSettings(),
        None,
        None,  # type: ignore[arg-type]
        limiter=RateLimiter(rate=1, burst=3, clock=clock),
    )
    return handlers, broadcaster


def drained(handlers: Handlers, sid: str) -> bool:
    """Spend what the bucket holds; True when it was empty already."""
    return [handlers._throttled(sid) is not None for _ in range(3)] == [True] * 3


async def test_forged_connection_events_change_nothing():
    sio, clock = FakeSio(), Clock()
    handlers, broadcaster = api(sio, clock)
    sio.manager.sessions["s1"] = "e1"
    assert [handlers._throttled("s1") for _ in range(3)] == [None] * 3
    await handlers.disconnect("s1", "client disconnect")  # s1 is still connected: a client sent this
    await handlers.connect("s1", {"HTTP_HOST": "127.0.0.1"}, {})
    assert broadcaster.forgotten == [] and broadcaster.clients == set() and sio.emitted == []
    assert drained(handlers, "s1")


async def test_leaving_the_namespace_keeps_the_connections_bucket_and_closing_it_drops_it():
    sio, clock = FakeSio(), Clock()
    handlers, broadcaster = api(sio, clock)
    sio.manager.sessions["s1"] = "e1"
    sio.manager.joining.add("s1")
    await handlers.connect("s1", {"HTTP_HOST": "127.0.0.1"}, None)
    sio.manager.joining.clear()
    assert sio.emitted == [("connected", "s1")] and broadcaster.clients == {"s1"}
    assert [handlers._throttled("s1") for _ in range(3)] == [None] * 3
    sio.manager.leaving.add("s1")  # "41": python-socketio marks the sid leaving, calls the handler, forgets it
    await handlers.disconnect("s1", "client disconnect")
    del sio.manager.sessions["s1"]
    assert broadcaster.forgotten == ["s1"]
    assert handlers._throttled("s1") is not None  # a request of s1 still in flight: charged to the connection
    sio.manager.sessions["s2"] = "e1"  # "40" again on the same Engine.IO session: a new sid, the same bucket
    assert drained(handlers, "s2")
    sio.eio.sockets["e1"].closing = True  # python-engineio closes the session, then the namespace handlers run
    sio.manager.leaving.add("s2")
    await handlers.disconnect("s2", "transport close")
    assert handlers.limiter.held == 0
