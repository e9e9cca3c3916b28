"""Log-bucketed histograms (DDSketch-style) of durations in seconds.

A value v >= 1 falls in bucket ceil(log_gamma(v)); values below one second in bucket 0.
Every value of a bucket is within ALPHA of the bucket's representative value
2 * gamma**b / (gamma + 1), so a quantile read from merged counts is within ALPHA (relative)
of the exact one. Counts add up, so histograms of hours merge into any period.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

ALPHA = 0.02  # relative accuracy of a quantile (the goal: 2%)
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)


def bucket(seconds: float) -> int:
    """The bucket of a duration (negative durations count as zero)."""
    if seconds < 1:
        return 0
    return max(1, math.ceil(math.log(seconds) / _LOG_GAMMA))


def representative(index: int) -> float:
    """The value a bucket stands for (0 for bucket 0)."""
    if index <= 0:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def quantile(counts: Mapping[Any, int] | list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram, None when it is empty. Uses the lower
    nearest rank: the value of rank ceil(q * n), as `percentile_disc` does in SQL."""
    return quantiles(counts, (q,))[0]


def quantiles(counts: Mapping[Any, int] | list[int], qs: Sequence[float]) -> list[float | None]:
    """Several quantiles (ascending `qs`) in one walk of the sorted buckets. `counts` maps
    bucket numbers (or zero-padded strings of them) to counts, or is the rollups' dense
    array [first bucket, count, count, ...]."""
    if isinstance(counts, list):
        first = counts[0]
        running = list(accumulate(counts[1:]))
        buckets: Sequence[Any] = range(first, first + len(running))
    else:
        buckets = sorted(counts)
        running = list(accumulate(map(counts.__getitem__, buckets)))
    if not running or running[-1] <= 0:
        return [None] * len(qs)
    total = running[-1]
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        out.append(representative(int(buckets[bisect_left(running, rank)])))
    return out
