"""ASGI middleware: the few plain HTTP endpoints beside Socket.IO (/healthz, /readyz, /metrics).

It sits outside the packet gate (api/packet_gate.py), so a probe never goes through Socket.IO's parsing,
and answers only GET and HEAD on exactly the paths it serves; every other request (Socket.IO's
/socket.io/ path above all) goes on to the wrapped application unchanged. A route is a synchronous
function returning (status, content type, body): each is a read of figures the process already holds,
done in well under a millisecond, so a probe's answer says the event loop is turning.

These endpoints take no token: Kubernetes probes and a container HEALTHCHECK send none, and nothing they
answer names a container or a client (docs/observability.md, "Who may ask").
"""

from __future__ import annotations

from typing import Callable

from api.packet_gate import App, Receive, Scope, Send

Response = tuple[int, str, bytes]  # (status, content type, body)
Route = Callable[[], Response]


class HttpRoutes:
    def __init__(self, app: App) -> None:
        self.app = app
        self.routes: dict[str, Route] = {}

    def serve(self, path: str, route: Route) -> None:
        """Answer GET/HEAD `path` with `route()` from now on (the wiring adds routes once their parts exist)."""
        self.routes[path] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            status, content_type, body = 405, "text/plain; charset=utf-8", b"method not allowed\n"
            extra = [(b"allow", b"GET, HEAD")]
        else:
            status, content_type, body = route()
            extra = []
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
