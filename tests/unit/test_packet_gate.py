"""The packet gate: oversized, binary, reserved and forged-framing Socket.IO packets never reach the parser as such."""

from __future__ import annotations

import json
import random
from typing import Any

from engineio import packet as eio_packet
from socketio import packet as sio_packet

from api.packet_gate import REJECTED_EVENT, PacketGate, gate_packet, gate_payload, parse_header

LIMIT = 100


def rejection(packet: str | None) -> tuple[str, dict[str, Any]]:
    assert packet is not None
    prefix, _, rest = packet.partition("[")
    name, info = json.loads("[" + rest)
    assert name == REJECTED_EVENT
    return prefix, info


def test_small_packets_pass_untouched():
    for packet in ("2", "3probe", "40", '40{"token":"x"}', '42["list_containers",{}]', '4217["start_container",{}]', "41", '43/admin,3["x"]', "5"):
        assert gate_packet(packet, LIMIT) is packet


def test_an_oversized_event_becomes_a_rejection_that_keeps_its_name_namespace_and_ack():
    body = json.dumps({"container_id": "a", "message": {"data": "x" * 500}})
    packet = f'4231["send_message",{body}]'
    prefix, info = rejection(gate_packet(packet, LIMIT))
    assert prefix == "4231" and info == {"event": "send_message", "reason": "size", "bytes": len(packet), "limit": LIMIT}
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
    for packet in (
        '42["disconnect"]',
        '42["connect",{"HTTP_HOST":"x"},{"token":"t"}]',
        '42 [ "disconnect" ]',
        '42["dis\\u0063onnect"]',
        "42" + "7" * 40 + '["disconnect"]',
        '42/,["connect"]',
        '4212-["disconnect"]',
        '42/?x,["disconnect"]',
    ):
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
    await PacketGate(app, LIMIT, 10_000)(
        {"type": "websocket"},
        feeder(
            [
                {"type": "websocket.connect"},
                {"type": "websocket.receive", "text": "40"},
                {"type": "websocket.receive", "bytes": b"\x00" * 50},
                {"type": "websocket.receive", "text": big},
                {"type": "websocket.disconnect", "code": 1000},
            ]
        ),
        None,
    )
    texts = [m.get("text") for m in app.received]
    assert texts[:2] == [None, "40"] and rejection(texts[2])[1]["reason"] == "size" and len(app.received) == 4


async def test_polling_posts_are_rewritten_with_their_new_length_and_capped():
    app, sent = FakeApp(), []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    big = ('42["send_message","' + "x" * 200 + '"]').encode()
    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", str(len(big)).encode())]}
    await PacketGate(app, LIMIT, 10_000)(
        scope, feeder([{"type": "http.request", "body": big[:50], "more_body": True}, {"type": "http.request", "body": big[50:]}]), send
    )
    body = app.received[0]["body"]
    assert rejection(body.decode())[1]["bytes"] == len(big)
    assert dict(app.scope["headers"])[b"content-length"] == str(len(body)).encode()
    app = FakeApp()
    await PacketGate(app, LIMIT, 100)(scope, feeder([{"type": "http.request", "body": big}]), send)
    assert app.received == [] and sent[0]["status"] == 413


# -- forged framing: digits python-engineio and python-socketio read with int()/str.isdigit() ------------------
# Each "digit" below is read by the parsers as a number (or makes them raise), so the gate must never pass it:
# a packet whose framing is not plain ASCII is not one a Socket.IO client sends, and it closes the connection.
FOREIGN = {
    "arabic-indic": "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
    "fullwidth": "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19",
    "devanagari": "\u0966\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f",
}
SUPERSCRIPT = {"0": "\u2070", "1": "\u00b9", "2": "\u00b2", "3": "\u00b3", "4": "\u2074"}  # isdigit(), int() fails


def forged_digits(digit: str) -> list[str]:
    """The ASCII digit and every spelling of it the parsers also read as a digit."""
    return [FOREIGN[script][int(digit)] for script in FOREIGN] + ([SUPERSCRIPT[digit]] if digit in SUPERSCRIPT else [])


def forgeries() -> list[str]:
    frames = []
    for d in forged_digits("4"):  # the Engine.IO type itself
        frames += [d + '2["disconnect"]', d + '2["list_containers",{}]', d + "0", d + '51-["x",{}]']
    for d in forged_digits("2"):  # the Socket.IO type
        frames += [
            f'4{d}["disconnect"]',
            f'4{d}["connect",{{"HTTP_HOST":"127.0.0.1"}},{{}}]',
            f'4{d}["list_containers",{{}}]',
            f'4{d}/x,["disconnect"]',
        ]
    for d in forged_digits("0") + forged_digits("1"):  # a forged namespace connect or disconnect
        frames += [f"4{d}", f'4{d}{{"token":"t"}}', f"4{d}/x,"]
    for d in forged_digits("5"):
        frames += [f'4{d}1-["send_message",{{"_placeholder":true,"num":0}}]']
    for d in forged_digits("1"):  # the attachment count, on every packet type
        frames += [f'42{d}-["disconnect"]', f'45{d}-["x",{{"_placeholder":true,"num":0}}]', f'42{d}{d}-["x"]']
    for d in forged_digits("3"):  # the ack id, alone or after ASCII digits
        frames += [
            f'42{d}["disconnect"]',
            f'42{d}["list_containers",{{}}]',
            f'4217{d}["list_containers",{{}}]',
            f'42/x,{d}["disconnect"]',
            f"43{d}[]",
            f'40{d}{{"token":"t"}}',
        ]
    # the Engine.IO message is JSON-decoded when it does not start with a digit: a JSON string is a packet too
    frames += [
        '4"2[\\"disconnect\\"]"',
        '4 "2[\\"disconnect\\"]"',
        '4"\\u0032[\\"connect\\"]"',
        "4true",
        "4 1",
        "4 1.0",
        "4-1",
        "4[]",
        '4{"a":1}',
        "4",
        "47",
        "48[]",
        "49",
    ]
    frames += ["42" + "1" * 11 + '-["x"]', "42" + "1" * 101 + '["list_containers",{}]']  # the parsers raise
    frames += ['42/\u00e4,["list_containers",{}]', "x", "", "d=42%5B%22disconnect%22%5D", "\u00b2probe"]
    return frames


def test_packets_framed_with_digits_of_other_scripts_close_the_connection():
    for frame in forgeries():
        assert gate_packet(frame, LIMIT) == "1", ascii(frame)
        assert gate_packet(frame, 10_000) == "1", ascii(frame)


def test_plain_ascii_framing_at_its_limits_still_passes():
    for frame in (
        "42" + "1" * 100 + '["list_containers",{}]',
        '4210-["x"]',
        "431234567890-7[]",
        '42/admin?x=1,["x"]',
        "42/x",
        "40/x,",
        '40{"token":"\u0663"}',
        '42["list_containers",{"container_id":"\u0663"}]',
        '42["x-\u0663-1"]',
        '427["x","-1"]',
    ):
        assert gate_packet(frame, 10_000) is frame, frame


def test_the_gate_reads_every_passed_packet_as_the_parsers_do():
    """Whatever the gate lets through, python-engineio and python-socketio decode to what the gate saw."""
    foreign = "".join(FOREIGN.values()) + "".join(SUPERSCRIPT.values()) + "\u00bd\u4e94"  # and numerics
    rng = random.Random(16)

    def digits(most: int) -> str:
        return "".join(rng.choice("0123456789" * 8 + foreign) for _ in range(rng.randint(0, most)))

    def field(*choices: str) -> str:
        return rng.choice(choices)

    samples = forgeries()
    for _ in range(30_000):  # the fields in order, each ASCII most of the time, each also missing or odd
        samples.append(
            field("4", "4", "4", "3", "b", rng.choice(foreign))
            + field(*"0123456", "7", " ", '"', digits(1))
            + field("", "", digits(3) + "-", digits(12) + "-", "-", digits(2))
            + field("", "", "/", "/x,", "/x?y,", "/,", "/\u00e4,", "/x")
            + field("", "", digits(4), "1" * 101)
            + field("", '["disconnect"]', '["connect",{}]', '["x",1]', '["x-1"]', "[", "{}", '"a"', "-1")
        )
    compared: set[tuple[int, bool, bool, bool]] = set()
    for frame in samples:
        passed = gate_packet(frame, 10_000)
        if passed is None or passed == "1":
            continue
        try:
            outer = eio_packet.Packet(encoded_packet=passed)
        except ValueError:
            continue
        if outer.packet_type != eio_packet.MESSAGE:
            assert passed[0] in "012356", ascii(frame)
            continue
        assert isinstance(outer.data, str), ascii(frame)
        header = parse_header(passed)
        assert header is not None, ascii(frame)
        try:
            inner = sio_packet.Packet(encoded_packet=outer.data)
        except ValueError:
            continue
        assert (inner.packet_type, inner.id, inner.namespace, inner.attachment_count) == (
            header.kind,
            header.ack,
            header.namespace,
            header.attachments,
        ), ascii(frame)
        compared.add((inner.packet_type, inner.attachment_count > 0, inner.namespace is not None, inner.id is not None))
        assert inner.packet_type not in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK), ascii(frame)
        if inner.packet_type == sio_packet.EVENT and isinstance(inner.data, list) and inner.data:
            assert inner.data[0] not in ("connect", "disconnect"), ascii(frame)
    assert len(compared) >= 30, compared  # every field, present or not, was compared on passed packets


def test_a_polling_body_ends_at_a_forged_packet():
    body = "\x1e".join(['42["list_containers",{}]', '4\u0662["disconnect"]', "40", '42["list_containers",{}]'])
    assert gate_payload(body, LIMIT).split("\x1e") == ['42["list_containers",{}]', "1"]
    assert gate_payload("d=4%D9%A2%5B%22disconnect%22%5D", LIMIT) == "1"  # JSONP bodies are URL-decoded first
    assert gate_payload("", LIMIT) == ""


async def test_a_forged_websocket_frame_closes_the_engineio_session_and_ends_the_stream():
    app = FakeApp()
    await PacketGate(app, LIMIT, 10_000)(
        {"type": "websocket"},
        feeder(
            [
                {"type": "websocket.connect"},
                {"type": "websocket.receive", "text": "40"},
                {"type": "websocket.receive", "text": "bNDJbImRpc2Nvbm5lY3QiXQ=="},  # base64 "binary" text frame: dropped
                {"type": "websocket.receive", "text": '4\u0662["disconnect"]'},
                {"type": "websocket.receive", "text": "40"},
            ]
        ),
        None,
    )
    assert [m.get("text") for m in app.received] == [None, "40", "1", None]
    assert app.received[-1]["type"] == "websocket.disconnect"


def test_arrays_nested_past_any_parser_close_the_connection_instead_of_raising():
    """json raises RecursionError on them (the gate's decoder and python-socketio's alike)."""
    assert gate_packet("42" + "[" * 50_000 + "]" * 50_000, 4 << 20) == "1"


async def test_a_post_to_a_session_that_is_not_open_reaches_engineio_unread():
    """python-engineio refuses an unknown sid before reading the body; the gate must not buffer it first
    (anyone, without a session, could make the manager hold up to the ceiling per connection)."""
    reached: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope)

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    gate = PacketGate(app, limit=1000, ceiling=4 << 20, open_session=lambda sid: sid == "open")
    scope = {"type": "http", "method": "POST", "query_string": b"EIO=4&transport=polling&sid=forged", "headers": []}
    await gate(scope, receive, None)
    assert reached == [scope]
