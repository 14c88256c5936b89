"""Issue 6's targets, their evaluation against one run's results, and the table (pure, unit-tested).

A target is either a ratio to a baseline measured in the same run (the
machine is shared and noisy, so absolute Docker times mean little) or an
absolute bound. Every row carries the baseline it was compared with, so the
table reads on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from bench.stats import ratio

Kind = Literal["max_ratio", "max", "min"]


@dataclass(frozen=True)
class Target:
    key: str
    name: str
    unit: str
    kind: Kind
    limit: float
    figure: Callable[[dict[str, Any]], float | None]
    baseline: Callable[[dict[str, Any]], float | None] = lambda r: None
    baseline_label: str = ""
    comparable: bool = True  # False when the "baseline" column is context (a count), not the same quantity


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    unit: str
    kind: Kind
    limit: float
    figure: float | None
    baseline: float | None
    baseline_label: str
    comparable: bool = True

    @property
    def ratio(self) -> float | None:
        return ratio(self.figure, self.baseline) if self.comparable else None

    @property
    def passed(self) -> bool | None:
        """None when the figure is missing (the phase failed or was skipped)."""
        value = self.ratio if self.kind == "max_ratio" else self.figure
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value >= self.limit if self.kind == "min" else value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.key,
            "name": self.name,
            "unit": self.unit,
            "kind": self.kind,
            "limit": self.limit,
            "figure": self.figure,
            "baseline": self.baseline,
            "baseline_label": self.baseline_label,
            "ratio": self.ratio,
            "passed": self.passed,
        }


def _get(results: dict[str, Any], *path: str) -> float | None:
    node: Any = results
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


TARGETS: tuple[Target, ...] = (
    Target(
        "1",
        "intent to running, p50 (create+start, 1 client)",
        "ms",
        "max_ratio",
        1.15,
        lambda r: _get(r, "intent", "manager_ms", "p50"),
        lambda r: _get(r, "intent", "direct_same_body_ms", "p50"),
        "aiodocker create+start, same body, p50",
    ),
    Target(
        "2",
        "fan-out: 100 containers by 10 clients until all run",
        "s",
        "max_ratio",
        1.25,
        lambda r: _get(r, "fanout", "manager_s"),
        lambda r: _get(r, "fanout", "direct_s"),
        "100 concurrent aiodocker create+start, same body",
    ),
    Target(
        "3a",
        "message round trip p50, 1 client",
        "ms",
        "max",
        1.5,
        lambda r: _get(r, "messages", "rtt_ms", "p50"),
        lambda r: _get(r, "baselines", "socketio_rtt_ms", "p50"),
        "bare Socket.IO call() p50",
    ),
    Target(
        "3b",
        "message round trip p99, 1 client",
        "ms",
        "max",
        5.0,
        lambda r: _get(r, "messages", "rtt_ms", "p99"),
        lambda r: _get(r, "baselines", "socketio_rtt_ms", "p99"),
        "bare Socket.IO call() p99",
    ),
    Target(
        "3c",
        "round trips per second, 10 clients",
        "1/s",
        "min",
        2000.0,
        lambda r: _get(r, "messages", "throughput_per_s"),
        lambda r: _get(r, "baselines", "socketio_broadcast_per_s"),
        "bare Socket.IO, reply broadcast to 10 clients",
    ),
    Target(
        "3c+",
        "round trips per second, 10 clients, each subscribed to its container (extension)",
        "1/s",
        "min",
        2000.0,
        lambda r: _get(r, "messages", "subscribed_throughput_per_s"),
        lambda r: _get(r, "baselines", "socketio_unicast_per_s"),
        "bare Socket.IO, reply to the sender only",
    ),
    Target(
        "4a",
        "status round delivered after its tick, worst round (200 running)",
        "ms",
        "max",
        500.0,
        lambda r: _get(r, "status_scale", "worst_round_ms"),
        lambda r: _get(r, "status_scale", "containers"),
        "containers per round",
        False,
    ),
    Target(
        "4b",
        "manager CPU while idle (200 running)",
        "% of a core",
        "max",
        5.0,
        lambda r: _get(r, "status_scale", "manager_cpu_percent"),
        lambda r: _get(r, "status_scale", "dockerd_cpu_percent"),
        "dockerd CPU, same window",
        False,
    ),
    Target(
        "5a",
        "worst event-loop lag during create/stop/delete of 100",
        "ms",
        "max",
        50.0,
        lambda r: _get(r, "churn", "max_loop_lag_ms"),
        lambda r: _get(r, "churn", "canary_max_lag_ms"),
        "idle canary process, same seconds",
    ),
    Target(
        "5a*",
        "the same, counting only lag the loop spent on a CPU (its own work)",
        "ms",
        "max",
        50.0,
        lambda r: _get(r, "churn", "max_busy_loop_lag_ms"),
        lambda r: _get(r, "churn", "cpu_during_max_loop_lag_ms"),
        "loop CPU during the worst lag of 5a",
        False,
    ),
    Target(
        "5b",
        "list_containers p99 during that churn",
        "ms",
        "max",
        20.0,
        lambda r: _get(r, "churn", "list_ms", "p99"),
        lambda r: _get(r, "churn", "echo_ms", "p99"),
        "bare Socket.IO echo p99, same seconds",
    ),
    Target(
        "6",
        "manager RSS with 200 managed containers",
        "MB",
        "max",
        150.0,
        lambda r: _get(r, "memory", "rss_mb"),
        lambda r: _get(r, "memory", "containers"),
        "managed containers",
        False,
    ),
)


def evaluate(results: dict[str, Any], targets: tuple[Target, ...] = TARGETS) -> list[Row]:
    return [Row(t.key, t.name, t.unit, t.kind, t.limit, t.figure(results), t.baseline(results), t.baseline_label, t.comparable) for t in targets]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _limit(row: Row) -> str:
    if row.kind == "max_ratio":
        return f"ratio <= {row.limit:g}"
    return f"{'>=' if row.kind == 'min' else '<='} {row.limit:g} {row.unit}"


def table(rows: list[Row]) -> str:
    """A Markdown table: readable in a terminal and pasteable into docs/performance.md."""
    lines = ["| # | target | figure | baseline (same run) | ratio | limit | result |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        baseline = f"{_fmt(row.baseline)} ({row.baseline_label})" if row.baseline_label else "-"
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[row.passed]
        lines.append(f"| {row.key} | {row.name} | {_fmt(row.figure)} {row.unit} | {baseline} | {_fmt(row.ratio)} | {_limit(row)} | {verdict} |")
    return "\n".join(lines)
