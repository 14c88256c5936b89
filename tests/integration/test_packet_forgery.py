"""Forged Socket.IO framing over a raw websocket (and long-polling) against the real server.

python-engineio and python-socketio read a packet's type, attachment count and ack id with int() and
str.isdigit(), which accept the digits of every script: `4\u0662["disconnect"]` (an Arabic-Indic two) is an
event named "disconnect" to them. Before the packet gate read the framing as they do, such a frame reached the
manager's disconnect handler, which forgot the client's rate-limit bucket, and `connect` could be forged the
same way. A client leaving the namespace ("41") and joining it again ("40") on the same Engine.IO session got a
new sid, and with it a fresh bucket too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

import aiodocker
import pytest
import websocket

from tests.integration.harness import Server

RATE, BURST = 2, 100  # requests per second, and the burst: the numbers the assertions are made of
REQUEST = '42["list_containers",{}]'


@pytest.fixture(scope="module")
def limited(docker: aiodocker.Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("forgery"), "--client-rate-limit", str(RATE), "--client-rate-burst", str(BURST), "--allow-polling")
    srv.start()
    yield srv
    srv.stop()


class RawSocket:
    """A Socket.IO client written frame by frame: it sends exactly what the test says."""

    def __init__(self, server: Server) -> None:
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=30)
        assert self.ws.recv().startswith("0{")  # Engine.IO open
        self.events: list[tuple[str, Any]] = []
        self.packets: list[str] = []
        self.closed = False

    def send(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.ws.send(text)
        except (websocket.WebSocketException, OSError):
            self.closed = True

    def read_until(self, done: Callable[[], bool], timeout: float = 60) -> None:
        """Read frames until `done()` or the server closes the connection (answering its pings)."""
        deadline = time.monotonic() + timeout
        while not done() and not self.closed:
            assert time.monotonic() < deadline, f"timed out; last packets {self.packets[-5:]}"
            try:
                text = self.ws.recv()
            except (websocket.WebSocketException, OSError):
                self.closed = True
                return
            if not text:
                self.closed = True
                return
            if text == "2":
                self.send("3")
                continue
            self.packets.append(text)
            if text.startswith("42["):
                name, *args = json.loads(text[2:])
                self.events.append((name, args[0] if args else None))

    def of(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    def join(self) -> str:
        """Connect to the default namespace; the sid."""
        joined = len(self.of("connected"))
        self.send("40")
        self.read_until(lambda: len(self.of("connected")) > joined)
        return self.of("connected")[-1]["sid"]

    def answers(self) -> int:
        return len(self.of("container_list")) + len(self.of("error"))

    def burst(self, count: int) -> tuple[int, int]:
        """Send `count` requests at once and read every answer: (served, refused)."""
        served, refused, before = len(self.of("container_list")), len(self.of("error")), self.answers()
        for _ in range(count):
            self.send(REQUEST)
        self.read_until(lambda: self.answers() >= before + count)
        errors = self.of("error")[refused:]
        assert {e["details"].get("limit") for e in errors} <= {"client_rate_limit"}, errors[:3]
        return len(self.of("container_list")) - served, len(errors)

    def close(self) -> None:
        self.ws.close()


def flood(server: Server) -> tuple[RawSocket, float]:
    """A connected client that has spent its burst: (the client, when its last request was refused)."""
    raw = RawSocket(server)
    raw.join()
    served, refused = raw.burst(600)
    emptied = time.monotonic()
    assert served + refused == 600 and BURST <= served < 300, (served, refused)
    assert raw.events[-1][0] == "error"  # the bucket is empty now
    return raw, emptied


def assert_still_limited(raw: RawSocket, emptied: float, count: int = 300) -> tuple[int, int]:
    served, refused = raw.burst(count)
    allowed = RATE * (time.monotonic() - emptied) + 2  # what the bucket refilled since it was emptied
    assert raw.closed or served + refused == count
    assert served <= allowed, f"{served} of {count} served after the forgery; the limit allows {allowed:.0f}"
    return served, refused


@pytest.mark.parametrize(
    "forgery",
    [
        '4\u0662["disconnect"]',
        '\u06642["disconnect"]',
        '4\uff12["disconnect"]',
        '4"2[\\"disconnect\\"]"',
        '42\u0663["disconnect"]',
        '42\u0661-["disconnect"]',
    ],
)
def test_a_forged_disconnect_neither_resets_the_rate_limit_nor_passes(limited: Server, forgery: str):
    raw, emptied = flood(limited)
    try:
        raw.send(forgery)
        served, refused = assert_still_limited(raw, emptied)
        assert raw.closed, f"the connection survived a forged frame ({served} served, {refused} refused after it)"
        assert len(raw.of("connected")) == 1
    finally:
        raw.close()


def test_leaving_and_joining_the_namespace_keeps_the_rate_limit(limited: Server):
    raw, emptied = flood(limited)
    try:
        first = raw.of("connected")[0]["sid"]
        raw.send("41")  # a legitimate Socket.IO disconnect: the Engine.IO session stays open
        second = raw.join()  # a new Socket.IO session (the connect handler runs, as it should) on the same socket
        assert second != first and not raw.closed
        served, refused = assert_still_limited(raw, emptied)
        assert not raw.closed and refused >= 250, (served, refused)
    finally:
        raw.close()


@pytest.mark.parametrize(
    "forgery",
    [
        '4\u0662["connect",{"HTTP_HOST":"127.0.0.1"},{}]',
        '\uff142["connect",{"HTTP_HOST":"127.0.0.1"},{}]',
        '4"2[\\"connect\\",{\\"HTTP_HOST\\":\\"127.0.0.1\\"},{}]"',
        "4\u0660",
        "4\u0661",
        "4true",
        '4\u06651-["list_containers",{}]',
    ],
)
def test_forged_connection_packets_close_the_connection_and_never_reach_the_handlers(limited: Server, forgery: str):
    raw = RawSocket(limited)
    try:
        raw.join()
        raw.send(forgery)
        raw.send('427["list_containers",{}]')  # answered (as "437[...]") only if the connection survived
        raw.read_until(lambda: any(p.startswith("437") for p in raw.packets), timeout=30)
        assert raw.closed, f"the connection survived {forgery!r}: {raw.packets[-3:]}"
        assert len(raw.of("connected")) == 1
    finally:
        raw.close()


def test_a_forged_packet_in_a_polling_body_ends_the_session(limited: Server):
    base = f"{limited.url}/socket.io/?EIO=4&transport=polling"

    def http(url: str, body: str | None = None) -> str:
        request = urllib.request.Request(url, data=body.encode() if body is not None else None, method="POST" if body is not None else "GET")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()

    for forgery in ('4\u0662["disconnect"]', "d=4%D9%A2%5B%22disconnect%22%5D"):
        session = f"{base}&sid={json.loads(http(base)[1:])['sid']}"
        assert http(session, "40").lower() == "ok"
        assert any(p.startswith("40{") for p in http(session).split("\x1e"))  # connected
        http(session, "\x1e".join([forgery, '427["list_containers",{}]']))
        with pytest.raises(urllib.error.HTTPError) as gone:  # the session is closed: nothing was answered
            http(session)
        assert gone.value.code == 400, forgery


def test_the_burst_is_the_configured_one(limited: Server):
    """Guards the numbers above: a fresh connection gets BURST requests at once, then RATE per second."""
    raw = RawSocket(limited)
    try:
        raw.join()
        started = time.monotonic()
        served, refused = raw.burst(300)
        assert BURST <= served <= BURST + RATE * (time.monotonic() - started) + 2, served
    finally:
        raw.close()
