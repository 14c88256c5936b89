"""ASGI middleware: every incoming Socket.IO packet is sized up before python-socketio parses it.

Without it an oversized request would either be parsed in full (memory, CPU)
or make Engine.IO drop the whole connection, and the client would never learn
why. Here a Socket.IO event larger than `limit` bytes is replaced, before
parsing, by a small `REJECTED_EVENT` carrying the original event name and ack
id, which the API answers with one `validation_error`. The API is JSON, so a
binary event is rejected the same way and binary attachment frames are
dropped unread (a binary event otherwise lets a client stream attachments into
the server's memory). So is an event named `connect` or `disconnect`:
python-socketio would hand it to the connection handlers, letting a client
forge a connect or reset its own rate limit.

The gate reads a packet's framing (Engine.IO type, Socket.IO type,
attachment count, namespace, ack id) exactly as python-engineio and
python-socketio will, and refuses what it cannot read the same way: those
parsers take digits with int()/str.isdigit(), which accept the digits of
every script ("4\u0662" is an event to them), and JSON-decode an Engine.IO
message that does not start with a digit (so '4"2[...]"' is one too). Any
packet whose framing is not plain ASCII closes the connection; nothing a
client sends after that is passed on.

Both transports are covered: websocket frames (whose size the ASGI server
caps at `ceiling`) and long-polling POST bodies (refused with 413 above it).
The wire formats are Engine.IO v4 and Socket.IO v5.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any, Awaitable, Callable, NamedTuple

REJECTED_EVENT = "flow_manager.rejected"
SEPARATOR = "\x1e"  # between the packets of one long-polling body
CLOSE = "1"  # Engine.IO close packet: the server ends that connection

_EVENT_NAME = re.compile(r'\["([A-Za-z0-9_.:-]{1,64})"')
_ARRAY_OPEN = re.compile(r"[ \t\n\r]*\[[ \t\n\r]*")
_DECODER = json.JSONDecoder()
MESSAGE = "4"  # Engine.IO message: the only Engine.IO packet whose data reaches python-socketio
CONTROL = frozenset("012356")  # the other Engine.IO packets (open, close, ping, pong, upgrade, noop)
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
RESERVED_EVENTS = frozenset({"connect", "disconnect"})  # python-socketio dispatches these to connection handlers
MAX_ATTACHMENT_DIGITS, MAX_ACK_DIGITS = 10, 100  # python-socketio raises past these
MAX_NAMESPACE = 256  # characters of a namespace echoed in a rejection

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _size(packet: str, limit: int) -> int | None:
    """The packet's UTF-8 size when it exceeds `limit`, else None (without encoding small packets)."""
    if len(packet) > limit:
        return len(packet.encode("utf-8", "surrogatepass"))
    if len(packet) * 4 > limit:
        size = len(packet.encode("utf-8", "surrogatepass"))
        return size if size > limit else None
    return None


TOO_DEEP = object()  # _event_name's answer for arrays nested beyond the interpreter's recursion limit


def _event_name(packet: str, start: int) -> object:
    """The first element of an event's JSON array, decoded as python-socketio will (escapes included)."""
    opening = _ARRAY_OPEN.match(packet, start)
    if opening is None:
        return None
    try:
        return _DECODER.raw_decode(packet, opening.end())[0]
    except ValueError:
        return None
    except RecursionError:  # nested too deep for any JSON parser here: python-socketio's would fail the same way
        return TOO_DEEP


class Header(NamedTuple):
    """The framing of one Socket.IO packet in an Engine.IO message, read as python-socketio will read it."""

    kind: int
    attachments: int
    namespace: str | None  # where python-socketio routes it (query stripped); None for the default "/"
    namespace_field: str  # the namespace as sent, without its comma ("" when absent)
    ack: int | None
    data: int  # where the JSON data starts


# Engine.IO message "4", Socket.IO type, [attachment count "-"], ["/" namespace [","]], [ack id]: ASCII digits only
_HEADER = re.compile(r"4([0-6])(?:([0-9]+)-)?(?:(/[^,]*),?)?([0-9]*)")


def parse_header(packet: str) -> Header | None:
    """The Socket.IO framing of an Engine.IO text packet, or None unless it is a message in plain ASCII framing.

    Mirrors the decode() of python-engineio 4 (`int(packet[0])`; the data is JSON-decoded unless
    `packet[1].isnumeric()`) and of python-socketio 5 (`int(type)`; an attachment count is the all-isdigit()
    text before the first "-"; a "/" starts a namespace ending at the first ","; the ack id is a run of
    isdigit() characters). int() and isdigit() accept digits of every script (and isdigit() superscripts,
    which int() then refuses), so each of those fields must be ASCII digits here, or the packet is refused:
    the gate never guesses what the parser will make of a digit it does not read itself. Once the ASCII
    fields are matched, a further isdigit() character means the parser would read the fields otherwise.
    """
    match = _HEADER.match(packet)
    if match is None:
        return None  # an Engine.IO message is JSON-decoded unless its second character is a digit
    kind, count, namespace_field, ack = match.groups()
    if packet[match.end() : match.end() + 1].isdigit():
        return None  # a digit the parser reads and this pattern does not (another script's, a superscript)
    if (count is not None and len(count) > MAX_ATTACHMENT_DIGITS) or len(ack) > MAX_ACK_DIGITS:
        return None  # python-socketio raises
    if namespace_field is not None and not namespace_field.isascii():
        return None  # the manager serves "/" only; a client has no use for other names
    return Header(
        int(kind),
        int(count) if count else 0,
        namespace_field.split("?", 1)[0] if namespace_field is not None else None,
        namespace_field or "",
        int(ack) if ack else None,
        match.end(),
    )


def gate_packet(packet: str, limit: int) -> str | None:
    """One Engine.IO text packet in; the packet to pass on (maybe a rejection) out, None to drop it, or
    CLOSE to end the connection (an oversized non-event, or framing that is not plain ASCII)."""
    size = _size(packet, limit)
    first = packet[:1]
    if first == "b":
        return None  # a base64 binary message: only attachments are binary, and no binary event passes
    if first in CONTROL:  # Engine.IO control packets are tiny by nature and never reach Socket.IO
        return CLOSE if size is not None else packet
    header = parse_header(packet)
    if header is None:
        return CLOSE  # what python-engineio/python-socketio would read here is not what the gate reads
    if header.kind == BINARY_ACK:
        return None  # the server never asks clients for acknowledgements
    if header.kind == BINARY_EVENT:
        reason = "binary"
    elif size is not None:
        if header.kind != EVENT or len(header.namespace_field) > MAX_NAMESPACE:
            return CLOSE  # an oversized connect, disconnect or ack is not a request: end the connection
        reason = "size"
    elif header.kind == EVENT and (name := _event_name(packet, header.data)) is TOO_DEEP:
        return CLOSE  # would raise in python-socketio's parser: a traceback per packet, not a request
    elif header.kind == EVENT and name in RESERVED_EVENTS:
        reason = "reserved"
    else:
        return packet
    if reason == "reserved":
        event: object = name
    else:
        match = _EVENT_NAME.match(packet, header.data)  # no decoding of a large packet
        event = match.group(1) if match else None
    details = {"event": event, "reason": reason, "bytes": size if size is not None else len(packet), "limit": limit}
    namespace = f"{header.namespace_field}," if header.namespace_field else ""
    ack = "" if header.ack is None else str(header.ack)
    return f"{MESSAGE}{EVENT}{namespace}{ack}" + json.dumps([REJECTED_EVENT, details], separators=(",", ":"))


def gate_payload(body: str, limit: int) -> str:
    """A long-polling body: packets separated by 0x1e; base64 binary packets ("b...") are dropped, and
    nothing after a packet that closes the connection is passed on (python-engineio would still read it).
    A JSONP body ("d=...", URL-encoded) fails the framing check of its first packet and closes too."""
    if not body:
        return body
    kept: list[str] = []
    for packet in body.split(SEPARATOR):
        passed = gate_packet(packet, limit)
        if passed is not None:
            kept.append(passed)
            if passed == CLOSE:
                break
    return SEPARATOR.join(kept)


class PacketGate:
    def __init__(self, app: App, limit: int, ceiling: int, open_session: Callable[[str], bool] | None = None) -> None:
        self.app, self.limit, self.ceiling = app, limit, ceiling
        # Is this Engine.IO session id open? A POST to any other is refused by python-engineio before it reads
        # the body, so it is passed on unread: buffering it here would let anyone, with no session, hold up to
        # `ceiling` bytes per connection.
        self.open_session = open_session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, self._websocket(receive), send)
        elif scope["type"] == "http" and scope.get("method") == "POST":
            if self.open_session is not None and not self.open_session(_session_id(scope)):
                await self.app(scope, receive, send)
                return
            await self._post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _websocket(self, receive: Receive) -> Receive:
        closed = False

        async def gated() -> Message:
            nonlocal closed
            while not closed:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return message
                text = message.get("text")
                if text is None:
                    continue  # a binary frame: only attachments of (rejected) binary events are binary
                passed = gate_packet(text, self.limit)
                if passed is not None:
                    closed = passed == CLOSE
                    return message if passed is text else {"type": "websocket.receive", "text": passed}
            # After a close python-engineio would go on reading (and dispatching) frames: end the stream instead,
            # so that it closes the websocket.
            return {"type": "websocket.disconnect", "code": 1008}

        return gated

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.ceiling:
                await _respond(send, 413, b"request body too large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            body = gate_payload(b"".join(chunks).decode("utf-8"), self.limit).encode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            await _respond(send, 400, b"request body is not UTF-8")
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)


def _session_id(scope: Scope) -> str:
    """The `sid` query parameter of a long-polling request ("" when there is none)."""
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query.get("sid") or [""])[0]


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})
