"""Who may connect: the shared token, checked once in the Socket.IO connect handler.

A client proves itself with `auth={"token": ...}` (python-socketio) or
`io(url, {auth: {token}})` (socket.io-client); a wrong or missing token is
refused before the client can send a single request or receive an event.

Without a token the manager is meant for loopback only, and there the one
remaining way in is a web page in the local browser: cross-origin pages are
refused by the CORS check, and DNS rebinding (a hostile name that resolves to
127.0.0.1, so the page counts as same-origin) is refused here by requiring a
loopback Host header.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for loopback addresses and names; a hostname is never trusted to be loopback."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a Host header: `name`, `name:port`, `[::1]:port`."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class ConnectAuth:
    token: str | None = field(default=None, repr=False)
    loopback_hosts_only: bool = True  # token-less and not --insecure: refuse rebinding tricks

    def refusal(self, environ: dict[str, Any], auth: Any) -> str | None:
        """Why this connection is refused, or None to accept it. Never echoes what the client sent."""
        if self.token:
            offered = auth.get("token") if isinstance(auth, dict) else None
            if not isinstance(offered, str):
                return "authentication required: connect with auth={'token': ...}"
            if not hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), self.token.encode("utf-8")):
                return "authentication failed: wrong token"
            return None
        if self.loopback_hosts_only and not is_loopback(host_of(environ.get("HTTP_HOST", "localhost"))):
            return "this manager has no token and accepts loopback Host names only"
        return None
