"""The replacement of python-engineio's AsyncSocket.poll keeps its behaviour (and is only installed over the
version it was written against)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from engineio import async_socket, exceptions

from api import engineio_tuning


def _socket(timeout: float = 0.05) -> SimpleNamespace:
    return SimpleNamespace(queue=asyncio.Queue(), server=SimpleNamespace(ping_interval=timeout / 2, ping_timeout=timeout / 2))


async def test_queued_packets_come_out_together_in_order():
    sock = _socket()
    for pkt in ("a", "b", "c"):
        sock.queue.put_nowait(pkt)
    assert await engineio_tuning.poll(sock) == ["a", "b", "c"]
    assert sock.queue.empty()


async def test_waits_for_the_next_packet():
    sock = _socket(timeout=2.0)
    asyncio.get_running_loop().call_later(0.02, sock.queue.put_nowait, "late")
    assert await engineio_tuning.poll(sock) == ["late"]


async def test_the_end_marker_stops_a_batch_and_stays_for_the_next_poll():
    sock = _socket()
    for pkt in ("a", None, "b"):
        sock.queue.put_nowait(pkt)
    assert await engineio_tuning.poll(sock) == ["a"]
    assert await engineio_tuning.poll(sock) == ["b"], "the marker goes back to the end of the queue, as before"
    assert await engineio_tuning.poll(sock) == [], "the end marker first: the connection is closing"


async def test_nothing_within_ping_interval_plus_timeout_is_queue_empty():
    sock = _socket(timeout=0.05)
    with pytest.raises(exceptions.QueueEmpty):
        await engineio_tuning.poll(sock)


async def test_cancelled_while_waiting_is_queue_empty_as_in_the_original():
    sock = _socket(timeout=5.0)
    waiting = asyncio.ensure_future(engineio_tuning.poll(sock))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(exceptions.QueueEmpty):
        await waiting


def test_installed_only_over_the_poll_it_replaces(monkeypatch):
    original = async_socket.AsyncSocket.poll
    monkeypatch.setattr(async_socket.AsyncSocket, "poll", original)
    if original is engineio_tuning.poll:
        pytest.fail("the test process already has the replacement installed; it must start from the original")
    digest = engineio_tuning.source_digest(original)
    assert digest == engineio_tuning.REPLACED_POLL, (
        f"python-engineio's AsyncSocket.poll changed (digest {digest}): review api/engineio_tuning.poll against "
        "it and update REPLACED_POLL, or the tuning stays off"
    )
    assert engineio_tuning.apply() is True
    assert async_socket.AsyncSocket.poll is engineio_tuning.poll

    async def other(self):  # a python-engineio whose poll is not the one replaced: left alone
        return []

    monkeypatch.setattr(async_socket.AsyncSocket, "poll", other)
    assert engineio_tuning.apply() is False and async_socket.AsyncSocket.poll is other
