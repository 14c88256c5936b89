"""Moments as the API writes them: ISO 8601, UTC, milliseconds, `Z` (`2025-07-21T10:30:00.000Z`).

One place for the format, so every timestamp a client sees reads the same
(controller events, status, errors, payloads).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


def iso(epoch: float) -> str:
    """A wall-clock moment (seconds since the epoch) in the API's format."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_now() -> str:
    """Now, in the API's format."""
    return iso(time.time())
