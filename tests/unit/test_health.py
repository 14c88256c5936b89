"""Health rules: Docker's HEALTHCHECK first, else the link's answers to pings."""

from __future__ import annotations

from controller.health import LinkProbe, effective_health, link_health


def probe(
    connected: bool = True, waiting: float | None = None, answered: float | None = 5.0, dropped: float | None = None, ever: bool = True
) -> LinkProbe:
    return LinkProbe(ever, connected, waiting, answered, dropped)


def test_no_link_ever_means_no_link_health():
    assert link_health(None, now=100, timeout=15) is None
    assert link_health(probe(connected=False, ever=False), now=100, timeout=15) is None


def test_answered_pings_are_healthy_and_a_late_one_is_tolerated_until_the_timeout():
    assert link_health(probe(), now=100, timeout=15) == "healthy"
    assert link_health(probe(waiting=90.0), now=100, timeout=15) == "healthy"
    assert link_health(probe(waiting=80.0), now=100, timeout=15) == "unhealthy"


def test_connected_but_never_answered_is_starting():
    assert link_health(probe(answered=None), now=100, timeout=15) == "starting"


def test_a_dropped_link_is_unhealthy_only_after_the_timeout_and_counts_from_this_runs_start():
    assert link_health(probe(connected=False, dropped=90.0), now=100, timeout=15) == "starting"
    assert link_health(probe(connected=False, dropped=50.0), now=100, timeout=15) == "unhealthy"
    # dropped long ago, but the container was (re)started 5 s ago: the runtime still has time to dial
    restarted = LinkProbe(True, False, None, None, disconnected_at=50.0, run_started_at=95.0)
    assert link_health(restarted, now=100, timeout=15) == "starting"


def test_docker_healthcheck_wins_and_stopped_containers_have_no_health():
    assert effective_health("healthy", "unhealthy", running=True) == "healthy"
    assert effective_health(None, "unhealthy", running=True) == "unhealthy"
    assert effective_health("unhealthy", "healthy", running=False) is None
