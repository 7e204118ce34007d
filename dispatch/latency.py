"""Latency histograms with fixed log-spaced buckets, so that percentiles can be computed
from sums of counts (per minute, per hour, over any set of endpoints).

Bucket `i` holds the durations `BOUNDS[i - 1] <= ms < BOUNDS[i]`; bucket 0 everything
below `BOUNDS[0]`, the last bucket everything from `BOUNDS[-1]` up. Bounds grow by a
factor 2^(1/4) (about 19 %) from 0.25 ms to 131 s, so a percentile read from the buckets
is within one bucket's width of the exact one, and closer after interpolation.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate

BOUNDS: tuple[float, ...] = tuple(2.0 ** (k / 4) for k in range(-8, 69))
"""Upper bounds in milliseconds of every bucket but the last."""
BUCKETS = len(BOUNDS) + 1


def bucket_of(duration_ms: float) -> int:
    """The bucket a duration falls in."""
    return bisect_right(BOUNDS, duration_ms)


def histogram(durations_ms: Sequence[float]) -> list[int]:
    counts = [0] * BUCKETS
    for duration in durations_ms:
        counts[bucket_of(duration)] += 1
    return counts


def percentile(counts: Sequence[float], q: float) -> float | None:
    """The `q` quantile (0 < q <= 1) of the durations a histogram counts; None when it
    counts nothing. Linear interpolation inside the bucket where the rank falls (like
    Prometheus' `histogram_quantile`); the open last bucket answers its lower bound.
    Counts may be fractional (weighted windows)."""
    cumulative = list(accumulate(counts))
    total = float(cumulative[-1]) if cumulative else 0.0
    if total <= 0:
        return None
    rank = q * total
    index = bisect_left(cumulative, rank)
    while index < len(counts) - 1 and counts[index] <= 0:
        index += 1
    if index >= BUCKETS - 1:
        return BOUNDS[-1]
    seen = cumulative[index] - counts[index]
    low = BOUNDS[index - 1] if index > 0 else 0.0
    high = BOUNDS[index]
    return low + (high - low) * max(rank - seen, 0.0) / counts[index]


def rounded_ms(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
