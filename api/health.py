"""Liveness and readiness, as probes ask for them: GET /healthz and GET /readyz (served by api/http_routes.py).

- Alive (/healthz): the event loop answers (this very answer), it has not been stalled longer than a
  bound (api/diagnostics/loop_monitor.py's last tick is recent and was not that late), and none of the
  reconcile loop's tasks has died. A failure means "restart me"; nothing outside the process (Docker, the
  disk) makes the manager not alive.
- Ready (/readyz): the journal was replayed and takes writes, the server is listening (start-up finished,
  not shutting down), the Docker engine answers, and the controller has listed Docker's containers since
  the manager started. A failure means "do not send me work now"; it flips back by itself.

Each answer is a small JSON object, `{"status": ..., "checks": {name: "ok" or why not}}`, with 200 or 503.
The reasons are fixed phrases: no path, container or error text from outside is echoed.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Mapping, Sequence

from api.diagnostics import LoopMonitor
from controller.engine import EngineState
from store.durability import JournalHealth

OK = "ok"
JSON = "application/json"
DEFAULT_STALL_BOUND = 5.0  # seconds the event loop may go without turning before the manager is not alive


def _response(checks: Mapping[str, str], good: str, bad: str) -> tuple[int, str, bytes]:
    healthy = all(value == OK for value in checks.values())
    body = {"status": good if healthy else bad, "checks": dict(checks)}
    return (200 if healthy else 503), JSON, json.dumps(body, separators=(",", ":")).encode() + b"\n"


class Liveness:
    def __init__(self, monitor: LoopMonitor, *, stall_bound: float = DEFAULT_STALL_BOUND, stopped: Callable[[], Sequence[str]] = lambda: ()) -> None:
        self.monitor, self.stall_bound = monitor, stall_bound
        self.stopped = stopped  # names of the long-lived tasks that have ended (they never should while serving)

    def loop_check(self) -> str:
        """ "ok", or how the event loop missed the bound (only when the lag monitor runs)."""
        last = self.monitor.last_tick
        if self.monitor.interval <= 0 or last is None:
            return OK  # no monitor: that this answer is being computed is the loop's proof of life
        silent = time.monotonic() - last
        if silent > self.stall_bound:
            return f"event loop stalled: no lag probe for {silent:.1f} s (bound {self.stall_bound:g} s)"
        if self.monitor.last_lag > self.stall_bound:
            return f"event loop stalled for {self.monitor.last_lag:.1f} s (bound {self.stall_bound:g} s)"
        return OK

    def respond(self) -> tuple[int, str, bytes]:
        checks = {"event_loop": self.loop_check()}
        dead = list(self.stopped())
        checks["controller"] = OK if not dead else f"tasks ended: {', '.join(sorted(dead))}"
        return _response(checks, "alive", "not alive")


class Readiness:
    def __init__(
        self,
        *,
        engine: EngineState,
        relisted: Callable[[], bool],
        listening: Callable[[], bool],
        journal: JournalHealth | None,
    ) -> None:
        self.engine, self.relisted, self.listening, self.journal = engine, relisted, listening, journal

    def checks(self) -> dict[str, str]:
        journal = self.journal
        return {
            # replayed before the server was built; `--store memory` has nothing to replay or write
            "journal": OK if journal is None or journal.writable else f"state directory not writable ({journal.reason})",
            "listening": OK if self.listening() else "not serving (starting or shutting down)",
            "docker_engine": OK if self.engine.available else "Docker engine unreachable",
            "relist": OK if self.relisted() else "Docker's containers not listed yet",
        }

    def respond(self) -> tuple[int, str, bytes]:
        return _response(self.checks(), "ready", "not ready")
