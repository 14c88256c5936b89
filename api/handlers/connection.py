"""The connection's events, and requests that never reach a model: connect, disconnect, rejected, unknown.

connect checks the client (api/auth.py) and greets it with the engine's status; disconnect drops its
subscriptions and, once the Engine.IO session closes, its rate-limit bucket. Forged connect/disconnect
events (python-socketio did not send them) change nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from api import payloads
from api.errors import ApiError
from api.handlers.base import HandlerBase
from controller.tracing import parse

log = logging.getLogger("flow_manager.api")
DEPARTED_REMEMBERED = 4096  # sids that left recently, with their Engine.IO session (for requests still in flight)


class ConnectionHandlers(HandlerBase):
    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if not self.sio.always_connect and not self.sio.manager.is_pre_connected(sid, "/"):
            # python-socketio calls this while the sid is joining; anything else is an event a client forged
            # (the packet gate refuses those: this is the second line)
            log.warning("ignored a connect event for %s that python-socketio did not send", sid)
            return
        refusal = self.auth.refusal(environ, auth)
        if refusal is not None:
            client = (environ.get("asgi.scope") or {}).get("client") or ("?", 0)
            log.warning("refused a connection from %s: %s", client[0], refusal)
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        if self.admission is not None:
            self.admission.authenticated(self._session(sid))
        self.broadcaster.clients.add(sid)
        traceparent = auth.get("traceparent") if isinstance(auth, dict) else None
        if isinstance(traceparent, str) and parse(traceparent) is not None:  # continued by each request (api/tracing.py)
            self._client_traces[sid] = traceparent
        engine = payloads.engine_status(self.view.engine_status())
        await self.sio.emit("connected", {"message": "Connected to Flow Manager", "sid": sid, "engine": engine}, to=sid)

    async def disconnect(self, sid: str, *args: Any) -> None:
        """The sid left the namespace: its subscriptions go; its rate-limit bucket goes with the connection only."""
        if self.sio.manager.is_connected(sid, "/"):
            # python-socketio marks the sid as leaving before it calls this: still connected means forged
            log.warning("ignored a disconnect event for %s that python-socketio did not send", sid)
            return
        self.broadcaster.forget(sid)
        if self._logs is not None:
            await self._logs.forget(sid)
        self._client_traces.pop(sid, None)
        session = self._session(sid)
        self._departed[sid] = session  # its requests already dispatched still count against that connection
        while len(self._departed) > DEPARTED_REMEMBERED:
            self._departed.popitem(last=False)
        if not self._session_open(session):  # after a Socket.IO "41" the client may join again ("40")
            self.limiter.forget(session)

    def _session_open(self, session: str) -> bool:
        """False once python-engineio is closing the session (it marks it before the disconnect handlers run)."""
        socket = self.sio.eio.sockets.get(session)
        return socket is not None and not (socket.closing or socket.closed)

    async def rejected(self, sid: str, info: Any = None, *extra: Any) -> dict[str, Any]:
        """A packet the gate replaced before parsing: too large, or binary."""
        info = info if isinstance(info, dict) else {}
        event = info.get("event")
        operation = event if event in self.operations or info.get("reason") == "reserved" else "(unknown)"
        limit = info.get("limit") if isinstance(info.get("limit"), int) else None
        if info.get("reason") == "binary":
            error = ApiError("validation_error", "binary payloads are not accepted: the API is JSON", field="(request)")
        elif info.get("reason") == "reserved":
            error = ApiError("validation_error", "connect and disconnect are not events a client may send", field="(event)")
        else:
            size = info.get("bytes") if isinstance(info.get("bytes"), int) else "?"
            error = ApiError(
                "validation_error",
                f"request of {size} bytes is larger than the limit of {limit} bytes (--max-request-bytes)",
                field="(request)",
                limit="max_request_bytes",
                max=limit,
            )
        return await self._fail(sid, operation, error)

    async def unknown_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        return await self._fail(
            sid, str(event)[:64], ApiError("validation_error", f"unknown event; the events are {', '.join(sorted(self.operations))}", field="(event)")
        )
