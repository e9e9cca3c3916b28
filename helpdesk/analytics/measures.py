"""Measures read from merged rollup metrics, with small cells suppressed (pure functions).

A count of 1..k-1 tickets could single out a requester: it is answered as null, and so is
every measure computed from it; the figure's `suppressed` flag then says so. Zero is not
suppressed (it identifies nobody).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import add
from typing import Any

from helpdesk.analytics.histogram import quantiles

# A stored cell's precomputed {histogram: [median, p90]} (helpdesk.analytics.facts.nest).
QUANTILES = "q"


def merge(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of stored rollup metrics: counts, dense histograms bucket by bucket, and the
    escalation levels. A cell's precomputed quantiles (`q`) do not add up: left out."""
    total: dict[str, Any] = {}
    hists: dict[str, list[list[int]]] = {}
    for metrics in rows:
        for name, v in metrics.items():
            if isinstance(v, list):
                hists.setdefault(name, []).append(v)
            elif isinstance(v, dict):
                if name == QUANTILES:
                    continue
                into = total.setdefault(name, {})
                for b, c in v.items():
                    into[b] = into.get(b, 0) + c
            else:
                total[name] = total.get(name, 0) + v
    for name, arrays in hists.items():
        total[name] = sum_dense(arrays)
    return total


def sum_dense(arrays: Sequence[list[int]]) -> list[int]:
    """Dense histograms [first bucket, counts...] added bucket by bucket (one allocation,
    each array added as one slice)."""
    if len(arrays) == 1:
        return list(arrays[0])
    first = min(a[0] for a in arrays)
    end = max(a[0] + len(a) - 1 for a in arrays)
    out = [0] * (end - first)
    for a in arrays:
        start = a[0] - first
        stop = start + len(a) - 1
        out[start:stop] = map(add, out[start:stop], islice(a, 1, None))
    return [first, *out]


def add_dense(a: list[int] | None, b: list[int]) -> list[int]:
    """Two dense histograms [first bucket, counts...] added."""
    return list(b) if a is None else sum_dense((a, b))


@dataclass
class Suppressor:
    """Answers counts below `k` as None and remembers that it did."""

    k: int
    suppressed: bool = field(default=False)

    def hides(self, count: int) -> bool:
        if 0 < count < self.k:
            self.suppressed = True
            return True
        return False

    def count(self, count: int) -> int | None:
        return None if self.hides(count) else count


def _durations(m: Mapping[str, Any], name: str, s: Suppressor) -> dict[str, Any]:
    n = int(m.get(f"{name}_n", 0))
    if s.hides(n) or n == 0:
        hidden = n > 0
        return {
            "count": None if hidden else 0,
            "median_seconds": None,
            "p90_seconds": None,
            "mean_seconds": None,
        }
    hist = m.get(name)
    if hist is None and name in (m.get(QUANTILES) or {}):
        median, p90 = m[QUANTILES][name]  # one cell, read without its histogram
    else:
        median, p90 = quantiles(hist or {}, (0.5, 0.9))
    return {
        "count": n,
        "median_seconds": None if median is None else round(median),
        "p90_seconds": None if p90 is None else round(p90),
        "mean_seconds": round(int(m.get(f"{name}_sum", 0)) / n),
    }


def _rate(part: int, whole: int, s: Suppressor) -> float | None:
    if whole == 0 or s.hides(whole):
        return None
    return round(part / whole, 4)


def _clock(c: Mapping[str, Any], name: str, s: Suppressor) -> dict[str, Any]:
    met, breached = c.get(f"{name}_met", 0), c.get(f"{name}_breached", 0)
    return {
        "met": s.count(met),
        "breached": s.count(breached),
        "achievement": _rate(met, met + breached, s),
    }


def measures(metrics: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Every measure of a period (or a series point, or an agent) from merged metrics."""
    s = Suppressor(k)
    m = c = metrics
    resolved = int(c.get("resolved", 0))
    levels = {level: s.count(int(v)) for level, v in sorted((m.get("esc") or {}).items()) if v}
    out: dict[str, Any] = {
        "created": s.count(c.get("created", 0)),
        "resolved": s.count(resolved),
        "reopened": s.count(c.get("reopened", 0)),
        "first_response": _durations(m, "fr", s),
        "resolution": _durations(m, "res", s),
        "first_response_business": _durations(m, "frb", s),
        "resolution_business": _durations(m, "resb", s),
        "sla": {
            "first_response": _clock(c, "fr", s),
            "resolution": _clock(c, "res", s),
        },
        "escalations": {"count": s.count(c.get("escalated", 0)), "by_level": levels},
        "reopen_rate": _rate(c.get("resolved_reopened", 0), resolved, s),
        "one_touch_rate": _rate(c.get("one_touch", 0), resolved, s),
        "csat": {
            "sent": s.count(c.get("csat_sent", 0)),
            "answered": s.count(c.get("csat_answered", 0)),
            "score": _rate(c.get("csat_good", 0), c.get("csat_answered", 0), s),
            "response_rate": _rate(c.get("csat_answered", 0), c.get("csat_sent", 0), s),
        },
    }
    out["suppressed"] = s.suppressed
    return out
