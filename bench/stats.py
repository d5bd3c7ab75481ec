"""Summaries of measured distributions, computed once at the end so the hot paths only append numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Summary = dict[str, Any]
"""count, p50_ms, p90_ms, p99_ms, max_ms (and min_ms, mean_ms): what every report prints."""

FloatArray = npt.NDArray[np.float64]


def summary(values: Sequence[float] | FloatArray) -> Summary:
    """Milliseconds, from values in seconds; an empty distribution says so instead of inventing zeros."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    p50, p90, p99 = np.percentile(data, (50, 90, 99))
    return {
        "count": int(data.size),
        "p50_ms": _ms(p50),
        "p90_ms": _ms(p90),
        "p99_ms": _ms(p99),
        "max_ms": _ms(data.max()),
        "min_ms": _ms(data.min()),
        "mean_ms": _ms(data.mean()),
    }


def per_second(times: FloatArray, values: FloatArray, start: float = 0.0) -> list[dict[str, float]]:
    """Per wall-clock second (from ``start``): how many values, their p99 and max, in ms: lateness over time."""
    if times.size == 0:
        return []
    seconds = np.floor(times - start).astype(np.int64)
    order = np.argsort(seconds, kind="stable")
    seconds, ordered = seconds[order], values[order]
    bounds = np.flatnonzero(np.diff(seconds)) + 1
    rows = []
    for second, chunk in zip(seconds[np.concatenate(([0], bounds))], np.split(ordered, bounds), strict=True):
        rows.append(
            {
                "t": float(second),
                "count": int(chunk.size),
                "p50_ms": _ms(np.percentile(chunk, 50)),
                "p99_ms": _ms(np.percentile(chunk, 99)),
                "max_ms": _ms(chunk.max()),
            }
        )
    return rows


def cdf_points(values: Sequence[float], points: int = 200) -> list[list[float]]:
    """A CDF thinned to ``points`` (ms, fraction) pairs, small enough to keep in the results file."""
    data = np.sort(np.asarray(values, dtype=np.float64))
    if data.size == 0:
        return []
    picks = np.unique(np.linspace(0, data.size - 1, min(points, data.size)).round().astype(np.int64))
    return [[_ms(data[i]), round(float((i + 1) / data.size), 5)] for i in picks]


def _ms(seconds: float | np.floating[Any]) -> float:
    return round(float(seconds) * 1000, 3)
