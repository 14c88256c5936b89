"""flow_runtime: the reference runtime of flow:latest and its tiny SDK.

User code lives in ``main.py`` in the code directory and defines
``handle(message) -> dict | None``. It may also push messages to the manager at
any time with :func:`send`. Standard library only, so it works in any image
that has Python 3.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing alone takes 10-50 ms in the image (see __getattr__)
if TYPE_CHECKING:
    from typing import Any

    from flow_runtime.framing import DEFAULT_MAX_FRAME, FrameError, decode, encode, read_frame

__all__ = ["send", "FrameError", "encode", "decode", "read_frame", "DEFAULT_MAX_FRAME"]
_FRAMING = {"FrameError", "encode", "decode", "read_frame", "DEFAULT_MAX_FRAME"}


def __getattr__(name: str) -> object:
    """The framing names, imported on first use: `python3 -m flow_runtime` imports this package before
    its __main__ can install the SIGTERM handler, and framing imports asyncio (0.2 s in the image)."""
    if name in _FRAMING:
        from flow_runtime import framing

        return getattr(framing, name)
    raise AttributeError(f"module 'flow_runtime' has no attribute {name!r}")


_sender: Any = None  # installed by the runtime once its link loop runs


def send(message: dict[str, Any]) -> None:
    """Queue a message for the manager; safe to call from any thread.

    Messages sent while the link is down are kept (bounded) and delivered in
    order once it is back.
    """
    if not isinstance(message, dict):
        raise TypeError("a message is a dict")
    if _sender is None:
        raise RuntimeError("flow_runtime.send() is only available inside the runtime")
    _sender(message)
