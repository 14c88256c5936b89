"""Emitting Socket.IO events without one asyncio task per recipient.

python-socketio's `AsyncServer.emit()` creates a task for every recipient and
waits for all of them, even though each one only puts a frame on that
client's Engine.IO queue. With every container message broadcast to every
client (the API reference's `message_received`), that was most of the
manager's CPU per message. Here the event is encoded once with the server's
own packet class, wrapped once in an Engine.IO packet, and that packet is
handed to each client's Engine.IO socket (`eio.send_packet`, a queue put that
does not block): the same bytes on the wire, in the same per-client order. Binary payloads (never produced by the
manager) go through `sio.emit` unchanged.
"""

from __future__ import annotations

from typing import Any, Collection

import socketio
from engineio import packet as engineio_packet
from socketio import packet


class Emitter:
    def __init__(self, sio: socketio.AsyncServer, namespace: str = "/") -> None:
        self.sio, self.namespace = sio, namespace

    async def emit(self, event: str, payload: Any, to: str | Collection[str] | None = None) -> None:
        """`event` to one client (`to`, a Socket.IO sid), to several (a collection of sids) or to every one."""
        encoded = self.sio.packet_class(packet.EVENT, namespace=self.namespace, data=[event, payload]).encode()
        if not isinstance(encoded, str):
            for sid in [to] if isinstance(to, str) else (to if to is not None else [None]):
                await self.sio.emit(event, payload, to=sid, namespace=self.namespace)
            return
        if to is None:
            recipients = [eio_sid for _, eio_sid in self.sio.manager.get_participants(self.namespace, None)]
        else:
            found = (self.sio.manager.eio_sid_from_sid(sid, self.namespace) for sid in ([to] if isinstance(to, str) else to))
            recipients = [eio_sid for eio_sid in found if eio_sid is not None]
        frame = engineio_packet.Packet(engineio_packet.MESSAGE, data=encoded)  # one, shared by every recipient
        for eio_sid in recipients:
            await self.sio.eio.send_packet(eio_sid, frame)

    def backlog(self, sid: str) -> int:
        """Frames waiting in one client's Engine.IO queue (0 when it is gone, or the internals differ)."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, self.namespace)
        socket = (getattr(self.sio.eio, "sockets", None) or {}).get(eio_sid)
        queue = getattr(socket, "queue", None)
        return queue.qsize() if queue is not None else 0

    def backlogs(self) -> dict[str, int]:
        """Frames waiting in each client's Engine.IO queue, by Socket.IO sid (a client reading slower than we send);
        a queue bounded in bytes (api.client_queue) counts large frames as more.

        Reads python-engineio's per-client queues; empty if those internals ever differ.
        """
        sockets = getattr(self.sio.eio, "sockets", None) or {}
        result = {}
        for eio_sid, socket in list(sockets.items()):
            queue = getattr(socket, "queue", None)
            sid = self.sio.manager.sid_from_eio_sid(eio_sid, self.namespace)
            if queue is not None and sid is not None:
                backlog = getattr(queue, "backlog", None)
                result[sid] = backlog() if backlog is not None else queue.qsize()
        return result
