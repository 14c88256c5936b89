"""The pure parts of the availability limits: the byte-bounded client queue, requests in flight, the
sessions waiting to authenticate and the TCP connection count."""

from __future__ import annotations

import json
from types import SimpleNamespace

from engineio import packet as engineio_packet

from api.admission import SessionGuard
from api.client_queue import ClientQueue
from api.inflight import InFlight
from flow_manager.listener import ConnectionLimits


def message(size: int) -> engineio_packet.Packet:
    return engineio_packet.Packet(engineio_packet.MESSAGE, data="2" + "x" * (size - 1))


async def test_a_queue_past_its_byte_budget_is_emptied_and_keeps_only_the_notice():
    dropped: list[ClientQueue] = []
    queue = ClientQueue(1000, dropped.append)
    for _ in range(3):
        queue.put_nowait(message(300))
    assert queue.bytes == 900 and not dropped
    queue.put_nowait(message(300))  # 1200 > 1000
    assert dropped == [queue] and queue.qsize() == 1
    notice = json.loads(queue.get_nowait().data[1:])
    assert notice[0] == "error" and notice[1]["details"]["limit"] == "client_queue_bytes" and notice[1]["details"]["max"] == 1000
    queue.put_nowait(message(10))  # nothing more for a dropped client but control packets and the end marker
    queue.put_nowait(engineio_packet.Packet(engineio_packet.CLOSE))
    queue.put_nowait(None)
    assert queue.get_nowait().packet_type == engineio_packet.CLOSE and await queue.get() is None and queue.empty()


async def test_bytes_are_given_back_as_packets_are_taken():
    queue = ClientQueue(1 << 20, lambda q: None)
    queue.put_nowait(message(1000))
    queue.put_nowait(message(500))
    assert queue.backlog() == max(2, 1500 * 1024 // (1 << 20))
    await queue.get()
    assert queue.bytes == 500
    queue.get_nowait()
    assert queue.bytes == 0


def test_in_flight_refuses_past_each_bound_and_counts_back():
    flight = InFlight(per_connection=2, total=3)
    assert flight.enter("a") is None and flight.enter("a") is None
    assert flight.enter("a") == "max_requests_in_flight_per_connection"
    assert flight.enter("b") is None
    assert flight.enter("c") == "max_requests_in_flight"
    flight.leave("a")
    assert flight.enter("c") is None and flight.refused == 2


def test_sessions_waiting_to_authenticate_are_capped_per_source_and_in_all_and_expire():
    now = [0.0]
    guard = SessionGuard(SimpleNamespace(handlers={}, sockets={}), timeout=5, max_unauthenticated=3, max_per_source=2, clock=lambda: now[0])
    assert guard.admit("s1", "10.0.0.1") and guard.admit("s2", "10.0.0.1")
    assert not guard.admit("s3", "10.0.0.1")  # per source
    assert guard.admit("s4", "10.0.0.2")
    assert not guard.admit("s5", "10.0.0.3")  # in all
    guard.authenticated("s1")
    assert guard.admit("s6", "10.0.0.1") and guard.source("s1") == "10.0.0.1"
    now[0] = 6.0
    assert guard.overdue() == ["s2", "s4", "s6"]
    guard.forget("s1")
    assert guard.source("s1") == "?"


def test_connections_are_counted_once_and_capped_per_source():
    limits = ConnectionLimits(total=3, per_source=2, handshake_timeout=1)
    transports = [SimpleNamespace(get_extra_info=lambda name, host=host: (host, 1)) for host in ("a", "a", "a", "b", "c")]
    admitted = [limits.admit(t) for t in transports]  # type: ignore[arg-type]
    assert admitted == [True, True, False, True, False]
    limits.release(transports[0])  # type: ignore[arg-type]
    limits.release(transports[0])  # type: ignore[arg-type]  # a second release of one connection changes nothing
    assert limits.count == 2 and limits.by_source == {"a": 1, "b": 1}


def test_a_queued_frame_counts_its_utf8_bytes_not_its_characters():
    from types import SimpleNamespace

    from api.client_queue import packet_bytes

    assert packet_bytes(SimpleNamespace(data="ab")) == 2
    assert packet_bytes(SimpleNamespace(data="é" * 10)) == 20  # 4x more before: the budget held 4x its bytes
    assert packet_bytes(SimpleNamespace(data="\U0001f600")) == 4
