"""The benchmark's pure parts: percentiles, target evaluation, the table, status-round matching."""

from __future__ import annotations

import json
import math

import pytest

from bench.report import TARGETS, evaluate, table
from bench.rounds import rounds_seen
from bench.stats import percentile, ratio, summarize


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize_and_ratio():
    summary = summarize([3.0, 1.0, 2.0])
    assert summary == {"n": 3, "min": 1.0, "mean": 2.0, "p50": 2.0, "p90": 2.8, "p99": 2.98, "max": 3.0}
    assert summarize([]) == {"n": 0}
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(1.0, 0) is None and ratio(None, 1.0) is None


def _results(**overrides):
    results = {
        "intent": {"manager_ms": {"p50": 110.0}, "direct_same_body_ms": {"p50": 100.0}},
        "fanout": {"manager_s": 13.0, "direct_s": 10.0},
        "messages": {"rtt_ms": {"p50": 1.2, "p99": 4.0}, "throughput_per_s": 2500.0, "subscribed_throughput_per_s": 1800.0},
        "baselines": {"socketio_rtt_ms": {"p50": 0.4, "p99": 1.0}, "socketio_broadcast_per_s": 3000.0, "socketio_unicast_per_s": 4000.0},
        "status_scale": {"worst_round_ms": 120.0, "containers": 200, "manager_cpu_percent": 1.0, "dockerd_cpu_percent": 3.0},
        "churn": {
            "max_loop_lag_ms": 20.0,
            "max_busy_loop_lag_ms": 5.0,
            "cpu_during_max_loop_lag_ms": 3.0,
            "canary_max_lag_ms": 10.0,
            "list_ms": {"p50": 2.0, "p99": 8.0},
            "echo_ms": {"p99": 4.0},
        },
        "memory": {"rss_mb": 90.0, "containers": 200},
    }
    results.update(overrides)
    return results


def test_every_target_evaluates_with_its_baseline():
    rows = {row.key: row for row in evaluate(_results())}
    assert list(rows) == [t.key for t in TARGETS]
    assert rows["1"].ratio == 1.1 and rows["1"].passed is True
    assert rows["2"].ratio == 1.3 and rows["2"].passed is False, "fan-out over 1.25x fails"
    assert rows["3c"].passed is True and rows["3c"].ratio == pytest.approx(0.833)
    assert rows["3c+"].passed is False and rows["3c+"].ratio == pytest.approx(0.45), "1800/s is under 2000/s"
    assert rows["4a"].ratio is None, "a count beside a time is context, not a ratio"
    assert all(row.passed is not None for row in rows.values())


def test_a_missing_phase_is_not_a_pass():
    rows = {row.key: row for row in evaluate(_results(churn={}))}
    assert rows["5a"].passed is None and rows["5b"].passed is None
    assert "n/a" in table(list(rows.values()))


def test_table_and_json_round_trip():
    rows = evaluate(_results())
    text = table(rows)
    assert text.splitlines()[0].startswith("| # | target |")
    assert len(text.splitlines()) == 2 + len(TARGETS)
    assert "FAIL" in text and "pass" in text
    encoded = json.loads(json.dumps([row.as_dict() for row in rows]))
    assert encoded[0]["ratio"] == 1.1 and encoded[0]["passed"] is True


def test_status_updates_are_matched_to_their_tick():
    arrivals = [(100.10, "a"), (100.20, "b"), (110.05, "a"), (110.40, "b"), (120.9, "a"), (130.1, "b")]
    rounds = rounds_seen(arrivals, [110.0, 100.0, 120.0], expected=2, interval=10)
    assert [(r["tick"], r["full"], r["last_after_tick_ms"]) for r in rounds] == [(100.0, True, 200.0), (110.0, True, 400.0), (120.0, False, 900.0)]
