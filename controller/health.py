"""A container's health: Docker's HEALTHCHECK verdict, else whether its link answers pings.

Pure functions of what was observed and the time, so each rule is unit-tested.
The manager pings every connected link (`flow.ping`); a runtime that is
connected but stopped answering, or that dropped its link and did not come
back, is unhealthy once `timeout` has passed. A container whose process never
opened a link (any image without the flow runtime) has no link health.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkProbe:
    """What the link manager knows about one container's link, at one moment."""

    ever_connected: bool
    connected: bool
    waiting_since: float | None  # the oldest ping still unanswered
    answered_at: float | None  # the last pong
    disconnected_at: float | None
    run_started_at: float | None = None  # when the container's current run began, as last observed


def link_health(probe: LinkProbe | None, *, now: float, timeout: float) -> str | None:
    if probe is None or not probe.ever_connected:
        return None
    if probe.connected:
        if probe.waiting_since is not None and now - probe.waiting_since > timeout:
            return "unhealthy"
        return "healthy" if probe.answered_at is not None else "starting"
    # A dropped link counts from the later of the drop and this run's start: a restart is not an outage.
    gone_since = max(probe.disconnected_at or 0.0, probe.run_started_at or 0.0)
    return "unhealthy" if now - gone_since > timeout else "starting"


def effective_health(docker_health: str | None, link: str | None, running: bool) -> str | None:
    """Docker's verdict wins when the image has a HEALTHCHECK; nothing is reported for a stopped container."""
    if not running:
        return None
    return docker_health or link
