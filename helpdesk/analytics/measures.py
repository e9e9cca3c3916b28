"""Measures read from merged rollup metrics, with small cells suppressed (pure functions).

A count of 1..k-1 tickets could single out a requester: it is answered as null, and so is
every measure computed from it; the figure's `suppressed` flag then says so. Zero is not
suppressed (it identifies nobody).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from helpdesk.analytics.histogram import quantiles


def merge(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of stored rollup metrics: counts, dense histograms bucket by bucket, and the
    escalation levels."""
    total: dict[str, Any] = {}
    for metrics in rows:
        for name, v in metrics.items():
            if isinstance(v, list):
                total[name] = add_dense(total.get(name), v)
            elif isinstance(v, dict):
                into = total.setdefault(name, {})
                for b, c in v.items():
                    into[b] = into.get(b, 0) + c
            else:
                total[name] = total.get(name, 0) + v
    return total


def add_dense(a: list[int] | None, b: list[int]) -> list[int]:
    """Two dense histograms [first bucket, counts...] added."""
    if a is None:
        return list(b)
    first = min(a[0], b[0])
    last = max(a[0] + len(a) - 2, b[0] + len(b) - 2)
    out = [0] * (last - first + 2)
    out[0] = first
    for h in (a, b):
        start = h[0] - first + 1
        for i, c in enumerate(h[1:]):
            out[start + i] += c
    return out


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
    hist = m.get(name) or {}
    median, p90 = quantiles(hist, (0.5, 0.9))
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
