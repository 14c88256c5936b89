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

Both transports are covered: websocket frames (whose size the ASGI server
caps at `ceiling`) and long-polling POST bodies (refused with 413 above it).
The wire formats are Engine.IO v4 and Socket.IO v5.
"""
from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

REJECTED_EVENT = "flow_manager.rejected"
SEPARATOR = "\x1e"  # between the packets of one long-polling body
CLOSE = "1"  # Engine.IO close packet: the server ends that connection

# Engine.IO MESSAGE ("4"), Socket.IO type, [attachments "-"], [namespace ","], [ack id]; as python-socketio
# parses them (its digits are str.isdigit(), hence \d rather than [0-9])
_HEADER = re.compile(r"4([0-9])(?:\d{1,10}-)?(/[^,]*,)?(\d*)")
_EVENT_NAME = re.compile(r'\["([A-Za-z0-9_.:-]{1,64})"')
_ARRAY_OPEN = re.compile(r"[ \t\n\r]*\[[ \t\n\r]*")
_DECODER = json.JSONDecoder()
EVENT, BINARY_EVENT, BINARY_ACK = "2", "5", "6"
RESERVED_EVENTS = frozenset({"connect", "disconnect"})  # python-socketio dispatches these to connection handlers

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


def _event_name(packet: str, start: int) -> object:
    """The first element of an event's JSON array, decoded as python-socketio will (escapes included)."""
    opening = _ARRAY_OPEN.match(packet, start)
    if opening is None:
        return None
    try:
        return _DECODER.raw_decode(packet, opening.end())[0]
    except ValueError:
        return None


def gate_packet(packet: str, limit: int) -> str | None:
    """One Engine.IO text packet in; the packet to pass on (maybe a rejection) out, or None to drop it."""
    size = _size(packet, limit)
    header = _HEADER.match(packet)
    if header is None:  # not a Socket.IO message: Engine.IO control packets are tiny by nature
        return CLOSE if size is not None else packet
    kind, namespace, ack = header.groups()
    if kind == BINARY_ACK:
        return None  # the server never asks clients for acknowledgements
    if kind == BINARY_EVENT:
        reason = "binary"
    elif size is not None:
        if kind != EVENT:
            return CLOSE  # an oversized connect, disconnect or ack is not a request: end the connection
        reason = "size"
    elif kind == EVENT and (name := _event_name(packet, header.end())) in RESERVED_EVENTS:
        reason = "reserved"
    else:
        return packet
    if reason == "reserved":
        event: object = name
    else:
        match = _EVENT_NAME.match(packet, header.end())  # no decoding of a large packet
        event = match.group(1) if match else None
    details = {"event": event, "reason": reason, "bytes": size if size is not None else len(packet), "limit": limit}
    return f"4{EVENT}{namespace or ''}{ack}" + json.dumps([REJECTED_EVENT, details], separators=(",", ":"))


def gate_payload(body: str, limit: int) -> str:
    """A long-polling body: packets separated by 0x1e; base64 binary packets ("b...") are dropped."""
    kept = (gate_packet(p, limit) for p in body.split(SEPARATOR) if not p.startswith("b"))
    return SEPARATOR.join(p for p in kept if p is not None)


class PacketGate:
    def __init__(self, app: App, limit: int, ceiling: int) -> None:
        self.app, self.limit, self.ceiling = app, limit, ceiling

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, self._websocket(receive), send)
        elif scope["type"] == "http" and scope.get("method") == "POST":
            await self._post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _websocket(self, receive: Receive) -> Receive:
        async def gated() -> Message:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return message
                text = message.get("text")
                if text is None:
                    continue  # a binary frame: only attachments of (rejected) binary events are binary
                passed = gate_packet(text, self.limit)
                if passed is not None:
                    return message if passed is text else {"type": "websocket.receive", "text": passed}
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


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
