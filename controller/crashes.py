"""Crash detection and restart back-off, as pure functions.

A crash is a run of the container that ended while the record wanted it
running and that the manager did not end itself. Each run is identified by
(docker id, start time), so a crash is reported once however often the
controller looks at it; the runs judged so far are journaled with the record
(Record.ended_runs), so that holds across a manager restart too. Back-off
follows kubelet: the first restart is immediate, then `initial` doubling up
to `maximum`, forgotten after `reset_after` seconds of clean running.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.observed import Observed
from store.records import DesiredState, Record, RunKey


@dataclass(frozen=True)
class RestartBackoff:
    initial: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0

    def delay(self, crash_count: int) -> float:
        if crash_count <= 1:
            return 0.0
        return min(self.initial * 2 ** (crash_count - 2), self.maximum)


@dataclass(frozen=True)
class Crash:
    exit_code: int
    oom_killed: bool
    error: str
    started_at: float | None
    finished_at: float | None

    @property
    def description(self) -> str:
        if self.oom_killed:
            return "Out of memory"
        if self.error:
            return self.error
        if self.exit_code >= 128:
            return f"Killed by signal {self.exit_code - 128}"
        return f"Exited with code {self.exit_code}"


def run_ended(observed: Observed | None) -> bool:
    """Did the observed container's current run end (as opposed to running, or never having run)?"""
    if observed is None or observed.running or observed.paused or observed.started_at is None:
        return False
    return observed.finished_at is not None and observed.finished_at >= observed.started_at


def detect_crash(record: Record | None, observed: Observed | None, acknowledged: frozenset[RunKey] | set[RunKey]) -> Crash | None:
    """`acknowledged`: runs already judged (ended by the manager, or judged before): never a crash."""
    if record is None or observed is None or record.desired is not DesiredState.RUNNING:
        return None
    if not run_ended(observed):
        return None
    if observed.run_key in acknowledged:
        return None
    return Crash(observed.exit_code, observed.oom_killed, observed.error, observed.started_at, observed.finished_at)


def next_crash_count(previous: int, crash: Crash, policy: RestartBackoff) -> int:
    """A crash after a long clean run starts the count afresh."""
    ran_for = (crash.finished_at or 0.0) - (crash.started_at or 0.0)
    return 1 if ran_for >= policy.reset_after else previous + 1
