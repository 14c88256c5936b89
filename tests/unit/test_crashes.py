from __future__ import annotations

from dataclasses import replace

from controller.crashes import Crash, RestartBackoff, detect_crash, next_crash_count
from store import DesiredState
from tests.unit.test_planner import observed, record


def exited(**kw):
    return replace(observed("exited"), running=False, started_at=100.0, finished_at=110.0, **kw)


def test_a_run_that_ended_while_desired_running_is_a_crash():
    crash = detect_crash(record(DesiredState.RUNNING), exited(exit_code=137), set())
    assert crash is not None and crash.exit_code == 137 and crash.description == "Killed by signal 9"


def test_each_run_is_reported_once():
    o = exited()
    assert detect_crash(record(DesiredState.RUNNING), o, {o.run_key}) is None


def test_a_requested_stop_is_not_a_crash():
    assert detect_crash(record(DesiredState.STOPPED), exited(), set()) is None


def test_running_or_never_started_is_not_a_crash():
    assert detect_crash(record(DesiredState.RUNNING), observed("running"), set()) is None
    assert detect_crash(record(DesiredState.RUNNING), replace(observed("created"), running=False, started_at=None), set()) is None


def test_oom_is_described_as_out_of_memory():
    crash = detect_crash(record(DesiredState.RUNNING), exited(exit_code=137, oom_killed=True), set())
    assert crash is not None and crash.description == "Out of memory"


def test_backoff_is_immediate_then_doubles_to_the_cap():
    policy = RestartBackoff(initial=10, maximum=300, reset_after=600)
    assert [policy.delay(n) for n in range(1, 9)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_long_clean_run_resets_the_count():
    policy = RestartBackoff(reset_after=600)
    short = Crash(1, False, "", started_at=0.0, finished_at=5.0)
    long = Crash(1, False, "", started_at=0.0, finished_at=700.0)
    assert next_crash_count(4, short, policy) == 5
    assert next_crash_count(4, long, policy) == 1
