"""Log-bucketed histograms (DDSketch-style) of durations in seconds.

A value v >= 1 falls in bucket ceil(log_gamma(v)); values below one second in bucket 0.
Every value of a bucket is within ALPHA of the bucket's representative value
2 * gamma**b / (gamma + 1), so a quantile read from merged counts is within ALPHA (relative)
of the exact one. Counts add up, so histograms of hours merge into any period.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram, None when it is empty. Uses the lower
    nearest rank: the value of rank ceil(q * n), as `percentile_disc` does in SQL."""
    return quantiles(counts, (q,))[0]


def quantiles(counts: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """Several quantiles (ascending `qs`) in one walk of the sorted buckets."""
    total = sum(counts.values())
    if total <= 0:
        return [None] * len(qs)
    ranks = [max(1, math.ceil(q * total)) for q in qs]
    out: list[float | None] = []
    seen = 0
    i = 0
    for index in sorted(counts):
        seen += counts[index]
        while i < len(ranks) and seen >= ranks[i]:
            out.append(representative(index))
            i += 1
        if i == len(ranks):
            break
    return out
