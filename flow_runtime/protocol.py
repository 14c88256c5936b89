"""The link protocol's names, shared by the manager and the in-container runtime.

Where the link is (mount point, socket name, the environment variable that
tells the runtime), and the control commands: a message whose `command`
starts with CONTROL_PREFIX is between the manager and the runtime and never
reaches clients. Both ends import this one module so the names cannot drift
apart. Standard library only, and nothing from the manager: the runtime is
standalone.
"""

from __future__ import annotations

CONTROL_PREFIX = "flow."
LINK_DIR = "/run/flow"  # in the container: the container's own link directory, mounted read-only
LINK_SOCKET_NAME = "link.sock"
LINK_PATH = f"{LINK_DIR}/{LINK_SOCKET_NAME}"
LINK_ENV = "FLOW_LINK"  # tells the runtime where to dial (LINK_PATH unless overridden)

# Control commands (manager -> runtime: PING, RELOAD; runtime -> manager: PONG, HELLO, RELOADED).
PING = "flow.ping"
PONG = "flow.pong"
RELOAD = "flow.reload"
RELOADED = "flow.reloaded"
HELLO = "flow.hello"


def is_control(command: object) -> bool:
    """A control command is the runtime's and the manager's business only."""
    return isinstance(command, str) and command.startswith(CONTROL_PREFIX)
