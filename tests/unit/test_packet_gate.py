"""The packet gate: oversized and binary Socket.IO packets never reach the parser."""
from __future__ import annotations

import json
from typing import Any

from api.packet_gate import REJECTED_EVENT, PacketGate, gate_packet, gate_payload

LIMIT = 100


def rejection(packet: str | None) -> tuple[str, dict[str, Any]]:
    assert packet is not None
    prefix, _, rest = packet.partition("[")
    name, info = json.loads("[" + rest)
    assert name == REJECTED_EVENT
    return prefix, info


def test_small_packets_pass_untouched():
    for packet in ("2", "3probe", "40", '40{"token":"x"}', '42["list_containers",{}]', '4217["start_container",{}]',
                   "41", '43/admin,3["x"]', "5"):
        assert gate_packet(packet, LIMIT) is packet


def test_an_oversized_event_becomes_a_rejection_that_keeps_its_name_namespace_and_ack():
    body = json.dumps({"container_id": "a", "message": {"data": "x" * 500}})
    packet = f'4231["send_message",{body}]'
    prefix, info = rejection(gate_packet(packet, LIMIT))
    assert prefix == "4231" and info == {"event": "send_message", "reason": "size", "bytes": len(packet),
                                         "limit": LIMIT}
    prefix, info = rejection(gate_packet(f'42/admin,7["x",{body}]', LIMIT))
    assert prefix == "42/admin,7" and info["event"] == "x"
    prefix, info = rejection(gate_packet("42" + "[" * 300, LIMIT))
    assert prefix == "42" and info["event"] is None


def test_sizes_are_utf8_bytes():
    packet = '42["send_message","' + "é" * 40 + '"]'  # 60 characters, 100+ bytes
    assert len(packet) < LIMIT
    assert rejection(gate_packet(packet, LIMIT))[1]["bytes"] == len(packet.encode())


def test_binary_events_are_rejected_and_binary_acks_dropped():
    prefix, info = rejection(gate_packet('451-5["send_message",{"_placeholder":true,"num":0}]', LIMIT))
    assert prefix == "425" and info["reason"] == "binary" and info["event"] == "send_message"
    assert gate_packet('461-3[{"_placeholder":true,"num":0}]', LIMIT) is None


def test_events_named_like_the_connection_handlers_are_rejected_however_spelled():
    for packet in ('42["disconnect"]', '42["connect",{"HTTP_HOST":"x"},{"token":"t"}]', '42 [ "disconnect" ]',
                   '42["dis\\u0063onnect"]', '42' + "7" * 40 + '["disconnect"]', '42/,["connect"]',
                   '4212-["disconnect"]', '42\u0663["disconnect"]'):
        prefix, info = rejection(gate_packet(packet, LIMIT))
        assert info["reason"] == "reserved" and info["event"] in ("connect", "disconnect"), packet
    assert gate_packet('42["disconnected",{}]', LIMIT) == '42["disconnected",{}]'
    assert gate_packet('42["connect_me"]', LIMIT) == '42["connect_me"]'


def test_other_oversized_packets_close_the_connection():
    assert gate_packet("40" + json.dumps({"token": "x" * 200}), LIMIT) == "1"
    assert gate_packet("2" + "x" * 200, LIMIT) == "1"
    assert gate_packet("43" + "1" * 200, LIMIT) == "1"


def test_polling_bodies_are_gated_packet_by_packet():
    big = '42["send_message","' + "x" * 200 + '"]'
    gated = gate_payload("\x1e".join(['421["list_containers",{}]', big, "bAAEC", "2"]), LIMIT).split("\x1e")
    assert gated[0] == '421["list_containers",{}]' and gated[2] == "2" and len(gated) == 3
    assert rejection(gated[1])[1]["reason"] == "size"


class FakeApp:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] in ("websocket.disconnect", "http.request"):
                return


def feeder(messages: list[dict[str, Any]]):
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)
    return receive


async def test_websocket_frames_are_gated_and_binary_frames_skipped():
    app = FakeApp()
    big = '42["send_message","' + "x" * 200 + '"]'
    await PacketGate(app, LIMIT, 10_000)({"type": "websocket"}, feeder([
        {"type": "websocket.connect"}, {"type": "websocket.receive", "text": "40"},
        {"type": "websocket.receive", "bytes": b"\x00" * 50}, {"type": "websocket.receive", "text": big},
        {"type": "websocket.disconnect", "code": 1000}]), None)
    texts = [m.get("text") for m in app.received]
    assert texts[:2] == [None, "40"] and rejection(texts[2])[1]["reason"] == "size" and len(app.received) == 4


async def test_polling_posts_are_rewritten_with_their_new_length_and_capped():
    app, sent = FakeApp(), []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
    big = ('42["send_message","' + "x" * 200 + '"]').encode()
    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", str(len(big)).encode())]}
    await PacketGate(app, LIMIT, 10_000)(scope, feeder([{"type": "http.request", "body": big[:50], "more_body": True},
                                                       {"type": "http.request", "body": big[50:]}]), send)
    body = app.received[0]["body"]
    assert rejection(body.decode())[1]["bytes"] == len(big)
    assert dict(app.scope["headers"])[b"content-length"] == str(len(body)).encode()
    app = FakeApp()
    await PacketGate(app, LIMIT, 100)(scope, feeder([{"type": "http.request", "body": big}]), send)
    assert app.received == [] and sent[0]["status"] == 413
