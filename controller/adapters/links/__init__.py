"""Per-container Unix-socket links (the link server): manager, per-link limits, wire, liveness, code handshake, files."""

from controller.adapters.links.link import Link, LinkFailure
from controller.adapters.links.manager import LinkManager
from controller.adapters.links.setup import DEFAULT_SOCKET_DIR, public_socket_path

__all__ = ["DEFAULT_SOCKET_DIR", "Link", "LinkFailure", "LinkManager", "public_socket_path"]
