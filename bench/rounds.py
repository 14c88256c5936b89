"""Matching the container_status_update events a client received to the manager's status ticks (pure)."""

from __future__ import annotations

from typing import Any


def rounds_seen(arrivals: list[tuple[float, str]], ticks: list[float], expected: int, interval: float) -> list[dict[str, Any]]:
    """For each tick: how many containers' updates arrived before the next one was due, and when the last did.

    `arrivals` are (wall time, container_id) as the client received them; `ticks`
    are the manager's wall-clock due times of its rounds (get_metrics). A round
    is full when every one of the `expected` containers was reported.
    """
    ordered = sorted(ticks)
    result = []
    for i, tick in enumerate(ordered):
        until = min(ordered[i + 1] if i + 1 < len(ordered) else float("inf"), tick + interval)
        inside = [(at, cid) for at, cid in arrivals if tick <= at < until]
        if not inside:
            continue
        last = max(at for at, _ in inside)
        result.append(
            {
                "tick": tick,
                "updates": len(inside),
                "containers": len({cid for _, cid in inside}),
                "full": len({cid for _, cid in inside}) >= expected,
                "last_after_tick_ms": round((last - tick) * 1000, 1),
            }
        )
    return result
