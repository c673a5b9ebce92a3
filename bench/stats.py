"""Small statistics for benchmark reports: medians with ranges, percentiles, ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median_range(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0–100) of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_summary(samples_us: Sequence[float]) -> dict[str, float]:
    """p50, p99 (nearest rank) and mean of latency samples in microseconds."""
    ordered = sorted(samples_us)
    return {
        "p50_us": percentile(ordered, 50),
        "p99_us": percentile(ordered, 99),
        "mean_us": statistics.fmean(ordered),
        "n": float(len(ordered)),
    }


def fmt_ops(stats: dict[str, float]) -> str:
    """``median (min–max) ops/s`` with thousands separators."""
    return f"{stats['median']:,.0f} ({stats['min']:,.0f}–{stats['max']:,.0f})"
