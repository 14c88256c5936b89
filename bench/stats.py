"""Summaries of latency samples (pure, unit-tested)."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(samples: Iterable[float], p: float) -> float:
    """The p-th percentile with linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Iterable[float], digits: int = 3) -> dict[str, float | int]:
    """n, min, mean, p50, p90, p99, max: what every latency figure in the report carries."""
    values = list(samples)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "mean": round(sum(values) / len(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
    }


def ratio(figure: float | None, baseline: float | None) -> float | None:
    """figure / baseline, or None when either is missing or the baseline is zero."""
    if figure is None or baseline is None or baseline == 0 or math.isnan(figure) or math.isnan(baseline):
        return None
    return round(figure / baseline, 3)
