"""The read side: what the controller last observed of each container, and the rules for reporting it.

The reconcile side writes each key's entry (Seen) as it looks at Docker; the status reader and the
request handlers only read here, so they need neither the reconcile loop nor the engine watch. The
state rule lives here once: `unknown` while the engine cannot be asked, `deleted` when Docker has no
container, else Docker's state in the API's words; and so does the health rule (Docker's HEALTHCHECK,
else the link's pings). Reading never writes: the only effect of a read is a wake-up of the key, so
the controller looks again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Callable, Protocol

from controller.engine import EngineState, EngineStatus
from controller.health import LinkProbe, effective_health, link_health
from controller.observed import ABSENT, Observed

UNKNOWN = "unknown"  # the state of every container while the engine cannot be asked (as a pod on a lost node)


class NotObserved(Exception):
    """A status read found nothing observed: the controller's first look at the key failed or is late."""


class LinkProbes(Protocol):
    ping_timeout: float

    def probe(self, container_id: str) -> LinkProbe | None: ...


@dataclass
class Seen:
    """What the controller last saw of one container, and its verdicts on it (lost with the process)."""

    state: str | None = None
    health: str | None = None
    observed: Observed | None = None
    looked: bool = False  # the controller has observed this key at least once since the manager started
    crash_count: int = 0
    restart_not_before: float | None = None
    waiting_reason: str | None = None
    last_error: tuple[str, str] | None = None  # (error type, message) of the key's last failed pass


class Observations:
    def __init__(self, engine: EngineState, wake: Callable[[str], None], links: LinkProbes | None = None) -> None:
        self.engine, self.wake, self.links = engine, wake, links
        self.keys: dict[str, Seen] = {}
        self._first_look: dict[str, asyncio.Event] = {}  # status reads waiting for a key's first observation

    # -- reading -----------------------------------------------------------------------
    def known(self, key: str) -> Seen | None:
        return self.keys.get(key)

    def engine_available(self) -> bool:
        return self.engine.available

    def engine_status(self) -> EngineStatus:
        return self.engine.status()

    def state_of(self, observed: Observed | None, absent: str = ABSENT) -> str:
        """The state rule: `unknown` while the engine is unreachable, `absent` when nothing was observed."""
        if not self.engine.available:
            return UNKNOWN
        return observed.api_state if observed is not None else absent

    def current(self, key: str, absent: str = ABSENT) -> tuple[str, str | None]:
        """(state, docker id) from the controller's last observation of the key."""
        seen = self.keys.get(key)
        observed = seen.observed if seen is not None else None
        return self.state_of(observed, absent), observed.docker_id if observed is not None else None

    def health_of(self, key: str, observed: Observed | None) -> str | None:
        """Docker's HEALTHCHECK verdict, else the link's; None for a container that does not run."""
        if observed is None:
            return None
        from_link = None
        if self.links is not None:
            probe = self.links.probe(key)
            if probe is not None:  # the run `observed` shows, even if the reconcile has not told the link yet
                probe = replace(probe, run_started_at=observed.started_at)
            from_link = link_health(probe, now=time.time(), timeout=self.links.ping_timeout)
        return effective_health(observed.health, from_link, observed.running)

    def health(self, key: str, observed: Observed | None) -> str:
        """The health word a status reports: `unknown` while the engine is unreachable."""
        if not self.engine.available:
            return "unknown"
        return self.health_of(key, observed) or "none"

    async def observation(self, key: str, timeout: float) -> Observed | None:
        """What the controller last observed of a key, for a status request: no Docker call.

        Docker's event stream and the resync keep it current (a container that exits is seen within
        milliseconds); the key is woken too, so a change the stream missed shows at the next read. Right
        after the manager started, before the controller's first look at the key, this waits for that
        look, up to `timeout`; NotObserved when it failed or took longer. While the engine is unreachable:
        the last thing Docker said, at once.
        """
        seen = self.keys.get(key)
        if not self.engine.available:
            return seen.observed if seen is not None else None
        self.wake(key)
        if seen is None or not seen.looked:
            first_look = self._first_look.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(first_look.wait(), timeout)
            except TimeoutError:
                raise NotObserved(f"the controller has not looked at container {key} within {timeout:g} s") from None
            seen = self.keys.get(key)
            if self.engine.available and seen is not None and not seen.looked:
                error = f": {seen.last_error[1]}" if seen.last_error else ""
                raise NotObserved(f"the controller could not look at container {key} yet{error}")
        return seen.observed if seen is not None else None

    # -- written by the reconcile side only ---------------------------------------------------
    def entry(self, key: str) -> Seen:
        return self.keys.setdefault(key, Seen())

    def looked(self, key: str) -> None:
        """The controller has observed the key: status reads waiting for that answer now."""
        seen = self.keys.get(key)
        if seen is not None:
            seen.looked = True
        self.answer(key)

    def answer(self, key: str) -> None:
        """A status read waiting for the key's first look is answered now (the look failed), not at its timeout."""
        waiting = self._first_look.pop(key, None)
        if waiting is not None:
            waiting.set()

    def answer_all(self) -> None:
        """The engine is gone: status reads answer from what is known, nothing to wait for."""
        for waiting in self._first_look.values():
            waiting.set()
        self._first_look.clear()

    def forget(self, key: str) -> None:
        self.keys.pop(key, None)
