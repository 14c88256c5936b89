"""Loop-lag and GC monitors, message-activity aggregation, the status round's list check."""

from __future__ import annotations

import asyncio
import gc
import time

from api.activity_throttle import ActivityThrottle
from api.diagnostics import GcMonitor, LoopMonitor
from controller.events import Activity
from controller.observed import Listed, health_from_status_text


async def test_loop_monitor_sees_a_blocking_call():
    monitor = LoopMonitor(interval=0.005)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.12)  # blocks the loop, as a synchronous call in a handler would
        await asyncio.sleep(0.03)
        window = monitor.snapshot(reset=True)["window"]
    finally:
        monitor.stop()
    assert window["max_lag_ms"] >= 100
    assert window["lags_over_50ms"] >= 1
    assert window["max_busy_lag_ms"] < 50, "a thread asleep is not on a CPU (as one waiting for a CPU)"
    assert monitor.snapshot()["window"]["samples"] <= 1, "reset starts a new window"


async def test_loop_monitor_tells_the_loops_own_work_from_waiting():
    monitor = LoopMonitor(interval=0.005)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        until = time.thread_time() + 0.12
        while time.thread_time() < until:  # 120 ms of CPU-bound work inside one callback
            pass
        await asyncio.sleep(0.03)
        window = monitor.snapshot()["window"]
    finally:
        monitor.stop()
    assert window["max_lag_ms"] >= 100 and window["max_busy_lag_ms"] >= 100
    assert window["busy_lags_over_50ms"] >= 1 and window["cpu_during_max_lag_ms"] >= 100


def test_gc_monitor_times_collections():
    monitor = GcMonitor()
    monitor.start()
    try:
        gc.collect()
    finally:
        monitor.stop()
    snapshot = monitor.snapshot()
    gen2 = snapshot["gen2"]
    # A full collection of the test process's heap takes well over the 0.01 ms the figures are rounded to.
    assert gen2["collections"] >= 1 and 0 < gen2["max_ms"] <= gen2["total_ms"], gen2


def _message(container: str, kind: str = "message_received") -> Activity:
    return Activity(kind, container, f"Message received from container {container}", {"command": "pong"})


async def test_message_activity_first_at_once_rest_folded():
    emitted: list[Activity] = []
    throttle = ActivityThrottle(emitted.append, window=0.05)
    for _ in range(5):
        throttle.offer(_message("a"))
    throttle.offer(_message("b"))
    throttle.offer(Activity("container_started", "a", "Container a started"))
    assert [(a.container_id, a.activity_type) for a in emitted] == [("a", "message_received"), ("b", "message_received"), ("a", "container_started")]
    await asyncio.sleep(0.08)
    assert len(emitted) == 4
    summary = emitted[-1]
    assert summary.container_id == "a" and summary.details == {"command": "pong", "count": 4}
    assert "4 messages" in summary.message
    await asyncio.sleep(0.08)  # the window after the summary closes empty: nothing more
    assert len(emitted) == 4
    throttle.offer(_message("a"))
    assert len(emitted) == 5, "after a quiet window a message is reported at once again"
    throttle.close()


def test_listed_entry_matches_what_was_inspected():
    entry = Listed.from_list(
        {"Id": "d1", "State": "running", "Status": "Up 3 minutes (healthy)", "Labels": {"io.kawaflow.flow-manager.container-id": "abc"}}
    )
    assert (entry.managed_id, entry.api_state, entry.health) == ("abc", "running", "healthy")
    assert health_from_status_text("Up 1 second (health: starting)") == "starting"
    assert health_from_status_text("Exited (0) 2 seconds ago") is None


def test_container_index_follows_lists_creates_removes_and_events():
    from controller.adapters.docker import ContainerIndex

    index = ContainerIndex()
    assert index.lookup("k1") is None, "no full list yet: callers list by label"
    index.listing_done(index.listing_started(), {"k1": ["d1"]})
    assert index.lookup("k1") is None, "a list without the event stream open is not trusted"
    index.follow()
    mark = index.listing_started()
    index.add("k2", "d2")  # created while the list was in flight: the list may not show it
    index.event({"Action": "destroy", "Actor": {"ID": "d0"}})
    index.listing_done(mark, {"k1": ["d1"], "k0": ["d0"]})
    assert index.lookup("k1") == ["d1"] and index.lookup("k2") == ["d2"]
    assert index.lookup("k0") == [] and index.lookup("unknown") == []
    index.event({"Action": "create", "Actor": {"ID": "d3", "Attributes": {"io.kawaflow.flow-manager.container-id": "k1"}}})
    assert index.lookup("k1") == ["d1", "d3"]
    index.discard("d1")
    assert index.lookup("k1") == ["d3"]
    mark = index.listing_started()
    index.invalidate()
    assert index.lookup("k1") is None, "after the event stream drops, only a new full list is trusted"
    index.follow()
    index.listing_done(mark, {"k1": ["d3"]})
    assert index.lookup("k1") is None, "a list that began before the stream dropped is not trusted"
    index.listing_done(index.listing_started(), {"k1": ["d3"]})
    assert index.lookup("k1") == ["d3"]


def test_cgroup_field_parsing():
    from controller.adapters.cgroup_stats import _field

    text = "cache 5\nrss 6\ntotal_inactive_file 77\n"
    assert (_field(text, "cache"), _field(text, "rss"), _field(text, "total_inactive_file")) == (5, 6, 77)
    assert _field(text, "inactive_file") is None, "a key is matched whole, not as a suffix"
    assert _field("usage_usec 12\nuser_usec 3", "usage_usec") == 12 and _field("", "a") is None


def test_json_first_packets_encode_like_python_socketio():
    from socketio import packet

    from api.packets import JsonFirstPacket

    cases = [
        (packet.EVENT, ["container_list", {"containers": [{"id": "a", "ports": {}}], "count": 1}], None, None),
        (packet.ACK, [{"ok": True, "x": [1, 2.5, None, "é"]}], None, 7),
        (packet.EVENT, ["hello"], "/ns", None),
        (packet.CONNECT, None, None, None),
    ]
    for kind, data, namespace, ack_id in cases:
        ours = JsonFirstPacket(kind, data=data, namespace=namespace, id=ack_id)
        theirs = packet.Packet(kind, data=data, namespace=namespace, id=ack_id)
        assert ours.encode() == theirs.encode() and ours.packet_type == theirs.packet_type
    binary = JsonFirstPacket(packet.EVENT, data=["blob", {"b": b"\x00\x01"}])
    assert binary.packet_type == packet.BINARY_EVENT, "bytes still travel as attachments"
    assert binary.encode() == packet.Packet(packet.EVENT, data=["blob", {"b": b"\x00\x01"}]).encode()
    decoded = JsonFirstPacket(encoded_packet='2["x",{"a":1}]')
    assert decoded.data == ["x", {"a": 1}]


async def test_deliveries_wait_for_a_slow_client_but_not_for_a_stuck_one(monkeypatch):
    import api.broadcast as broadcast

    monkeypatch.setattr(broadcast, "CLIENT_STUCK_AFTER", 0.1)
    monkeypatch.setattr(broadcast, "LAG_READ_EVERY", 0.0)  # every confirmation reads the queues afresh
    hub = broadcast.Broadcaster(sio=None)  # type: ignore[arg-type]  # nothing is emitted here
    queued = {"fast": 0, "slow": 0}
    monkeypatch.setattr(hub.emitter, "backlogs", lambda: dict(queued))
    confirmed: list[int] = []
    hub._confirm(lambda: confirmed.append(1))
    assert confirmed == [1], "nobody behind: confirmed at once"

    queued["slow"] = broadcast.CLIENT_BACKLOG_HIGH + 1
    hub._confirm(lambda: confirmed.append(2))
    await asyncio.sleep(0.03)
    assert confirmed == [1], "a client far behind holds the confirmation (the link stops reading)"
    queued["slow"] = 0
    await asyncio.sleep(0.03)
    assert confirmed == [1, 2]

    queued["slow"] = 10_000  # stopped reading altogether
    hub._confirm(lambda: confirmed.append(3))
    await asyncio.sleep(0.3)
    assert confirmed == [1, 2, 3], "after CLIENT_STUCK_AFTER the stuck client is no longer waited for"
    hub._confirm(lambda: confirmed.append(4))
    assert confirmed[-1] == 4
    await hub.stop()
