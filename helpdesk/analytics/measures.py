"""Measures read from merged rollup metrics, with small cells suppressed (pure functions).

A count of 1..k-1 tickets could single out a requester: it is answered as null, and so is
every measure computed from it; the figure's `suppressed` flag then says so. Zero is not
suppressed (it identifies nobody).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from helpdesk.analytics.histogram import quantile


def merge(rows: Iterable[Mapping[str, int]]) -> Counter[str]:
    """The sum of rollup metrics (counts and histogram buckets add up)."""
    total: Counter[str] = Counter()
    for metrics in rows:
        total.update(metrics)
    return total


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


def _histogram(m: Mapping[str, int], prefix: str) -> dict[int, int]:
    return {int(name[len(prefix) :]): v for name, v in m.items() if name.startswith(prefix)}


def _durations(m: Mapping[str, int], name: str, s: Suppressor) -> dict[str, Any]:
    n = int(m.get(f"{name}_n", 0))
    if s.hides(n) or n == 0:
        hidden = n > 0
        return {
            "count": None if hidden else 0,
            "median_seconds": None,
            "p90_seconds": None,
            "mean_seconds": None,
        }
    hist = _histogram(m, f"{name}:")
    median, p90 = quantile(hist, 0.5), quantile(hist, 0.9)
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


def _clock(m: Mapping[str, int], name: str, s: Suppressor) -> dict[str, Any]:
    met, breached = int(m.get(f"{name}_met", 0)), int(m.get(f"{name}_breached", 0))
    return {
        "met": s.count(met),
        "breached": s.count(breached),
        "achievement": _rate(met, met + breached, s),
    }


def measures(m: Mapping[str, int], k: int) -> dict[str, Any]:
    """Every measure of a period (or a series point, or an agent) from merged metrics."""
    s = Suppressor(k)
    resolved = int(m.get("resolved", 0))
    levels = {
        name.split(":", 1)[1]: s.count(int(v))
        for name, v in sorted(m.items())
        if name.startswith("esc:") and v
    }
    out: dict[str, Any] = {
        "created": s.count(int(m.get("created", 0))),
        "resolved": s.count(resolved),
        "reopened": s.count(int(m.get("reopened", 0))),
        "first_response": _durations(m, "fr", s),
        "resolution": _durations(m, "res", s),
        "sla": {
            "first_response": _clock(m, "fr", s),
            "resolution": _clock(m, "res", s),
        },
        "escalations": {"count": s.count(int(m.get("escalated", 0))), "by_level": levels},
        "reopen_rate": _rate(int(m.get("resolved_reopened", 0)), resolved, s),
        "one_touch_rate": _rate(int(m.get("one_touch", 0)), resolved, s),
        "csat": {
            "sent": s.count(int(m.get("csat_sent", 0))),
            "answered": s.count(int(m.get("csat_answered", 0))),
            "score": _rate(int(m.get("csat_good", 0)), int(m.get("csat_answered", 0)), s),
            "response_rate": _rate(int(m.get("csat_answered", 0)), int(m.get("csat_sent", 0)), s),
        },
    }
    out["suppressed"] = s.suppressed
    return out
