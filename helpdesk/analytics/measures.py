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
    """Answers counts below `k` as None and remembers that it did. `hide`: names of counts
    to answer as None whatever their size (complementary suppression, `complements`)."""

    k: int
    hide: frozenset[str] = frozenset()
    suppressed: bool = field(default=False)

    def hides(self, count: int, name: str = "") -> bool:
        if 0 < count < self.k or (count and name in self.hide):
            self.suppressed = True
            return True
        return False

    def count(self, count: int, name: str = "") -> int | None:
        return None if self.hides(count, name) else count


# The counts of a measures answer, by metric name: those a total (the same figure over all
# groups, or over a longer period) could reveal when one of them alone is suppressed.
COUNTS = (
    "created",
    "resolved",
    "reopened",
    "fr_n",
    "res_n",
    "frb_n",
    "resb_n",
    "fr_met",
    "fr_breached",
    "res_met",
    "res_breached",
    "escalated",
    "csat_sent",
    "csat_answered",
)


def protect(counts: Sequence[int], k: int) -> set[int]:
    """Complementary suppression of cells that add up to a total shown elsewhere: when
    exactly one of them is small (1..k-1, suppressed), the smallest shown non-zero one is
    suppressed too, so the total minus the shown cells gives only a sum of hidden ones.
    Returns the indices to hide besides the small ones."""
    small = [i for i, c in enumerate(counts) if 0 < c < k]
    if len(small) != 1:
        return set()  # none hidden, or already two or more: their sum alone is known
    shown = [(c, i) for i, c in enumerate(counts) if c >= k]
    return {min(shown)[1]} if shown else set()


def complements(cells: Sequence[Mapping[str, Any]], k: int) -> list[frozenset[str]]:
    """For cells that partition one total (the groups of a series' interval, the agents),
    the names of counts each must also hide (`protect`, count by count)."""
    out: list[set[str]] = [set() for _ in cells]
    for name in COUNTS:
        for i in protect([int(c.get(name, 0)) for c in cells], k):
            out[i].add(name)
    return [frozenset(names) for names in out]


def _durations(m: Mapping[str, Any], name: str, s: Suppressor) -> dict[str, Any]:
    n = int(m.get(f"{name}_n", 0))
    if s.hides(n, f"{name}_n") or n == 0:
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


def _rate(part: int, whole: int, s: Suppressor, name: str = "") -> float | None:
    if whole == 0 or s.hides(whole, name):
        return None
    return round(part / whole, 4)


def _clock(c: Mapping[str, Any], name: str, s: Suppressor) -> dict[str, Any]:
    met, breached = int(c.get(f"{name}_met", 0)), int(c.get(f"{name}_breached", 0))
    shown_met = s.count(met, f"{name}_met")
    shown_breached = s.count(breached, f"{name}_breached")
    # With one of the two shown, the share would give the other away: both or no share.
    hidden = (shown_met is None) or (shown_breached is None)
    return {
        "met": shown_met,
        "breached": shown_breached,
        "achievement": None if hidden else _rate(met, met + breached, s),
    }


def _levels(m: Mapping[str, Any], s: Suppressor) -> dict[str, int | None]:
    """Escalated tickets by level: the levels add up to the escalation count, so they are
    protected as one group (`protect`)."""
    found = [(level, int(v)) for level, v in sorted((m.get("esc") or {}).items()) if v]
    also = protect([v for _, v in found], s.k)
    out: dict[str, int | None] = {}
    for i, (level, v) in enumerate(found):
        if i in also:
            s.suppressed = True
            out[level] = None
        else:
            out[level] = s.count(v)
    return out


def measures(
    metrics: Mapping[str, Any], k: int, hide: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Every measure of a period (or a series point, or an agent) from merged metrics.
    `hide`: counts to suppress whatever their size (complementary suppression)."""
    s = Suppressor(k, hide)
    m = c = metrics
    resolved = int(c.get("resolved", 0))
    answered, sent = int(c.get("csat_answered", 0)), int(c.get("csat_sent", 0))
    shown_sent = s.count(sent, "csat_sent")
    shown_answered = s.count(answered, "csat_answered")
    out: dict[str, Any] = {
        "created": s.count(int(c.get("created", 0)), "created"),
        "resolved": s.count(resolved, "resolved"),
        "reopened": s.count(int(c.get("reopened", 0)), "reopened"),
        "first_response": _durations(m, "fr", s),
        "resolution": _durations(m, "res", s),
        "first_response_business": _durations(m, "frb", s),
        "resolution_business": _durations(m, "resb", s),
        "sla": {
            "first_response": _clock(c, "fr", s),
            "resolution": _clock(c, "res", s),
        },
        "escalations": {
            "count": s.count(int(c.get("escalated", 0)), "escalated"),
            "by_level": _levels(m, s),
        },
        "reopen_rate": _rate(c.get("resolved_reopened", 0), resolved, s, "resolved"),
        "one_touch_rate": _rate(c.get("one_touch", 0), resolved, s, "resolved"),
        "csat": {
            "sent": shown_sent,
            "answered": shown_answered,
            "score": _rate(c.get("csat_good", 0), answered, s, "csat_answered"),
            # Answered / sent with one of them shown would give the other away.
            "response_rate": (
                None if shown_sent is None or shown_answered is None else _rate(answered, sent, s)
            ),
        },
    }
    out["suppressed"] = s.suppressed
    return out
