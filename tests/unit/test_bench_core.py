"""The pure helpers of bench.core and bench.tickets: CPU accounting from /proc, ratios,
percentiles, RSS and gauge parsing, breach lateness from a ticket's history."""

from __future__ import annotations

import os

import pytest

from bench.core import breach_lateness, gauge, kb_per_item, p50_p99, ratio, rss_kb
from bench.tickets import cpu_ms_per_item, cpu_seconds_of_stat, process_tree, tree_cpu_seconds

# A /proc/<pid>/stat line whose command name holds spaces and a parenthesis; utime 250 and
# stime 50 ticks (fields 14 and 15).
STAT = (
    "4242 (temporal (dev) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 "
    "100 1000000 500 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)


def test_cpu_of_a_stat_line_skips_the_command_name() -> None:
    assert cpu_seconds_of_stat(STAT, 100) == pytest.approx(3.0)


def test_cpu_per_item_per_process() -> None:
    before = {"api_worker": 10.0, "server": 5.0}
    after = {"api_worker": 11.5, "server": 5.5}
    assert cpu_ms_per_item(before, after, 100) == {"api_worker": 15.0, "server": 5.0}
    with pytest.raises(ValueError):
        cpu_ms_per_item(before, after, 0)


def test_this_process_tree_and_its_cpu() -> None:
    tree = process_tree(os.getpid())
    assert tree[0] == os.getpid()
    assert tree_cpu_seconds(os.getpid()) > 0


def test_ratio_and_percentiles() -> None:
    assert ratio(46.1, 14.2) == 3.246
    assert ratio(None, 1.0) is None
    assert ratio(1.0, 0.0) is None
    assert p50_p99([]) == (None, None)
    values = [float(n) for n in range(1, 101)]
    p50, p99 = p50_p99(values)
    assert p50 == 50.5
    assert p99 == 99.0


def test_memory_per_item() -> None:
    assert kb_per_item(100_000, 280_000, 3000) == 60.0
    assert kb_per_item(1, 2, 0) is None
    status = "Name:\tpython\nVmRSS:\t  204800 kB\nRssAnon:\t  150000 kB\nRssFile:\t 54800 kB\n"
    assert rss_kb(status) == {"VmRSS": 204800, "RssAnon": 150000}


def test_gauge_sums_label_sets_and_ignores_longer_names() -> None:
    text = (
        "# TYPE temporal_sticky_cache_size gauge\n"
        'temporal_sticky_cache_size{namespace="default",task_queue="a"} 120\n'
        'temporal_sticky_cache_size{namespace="default",task_queue="b"} 3\n'
        "temporal_sticky_cache_size_total 99\n"
    )
    assert gauge(text, "temporal_sticky_cache_size") == 123.0
    assert gauge(text, "temporal_missing") is None


def test_breach_lateness_from_history() -> None:
    history = [
        {"action": "ticket.created", "at": "2026-01-01T10:00:00+00:00", "changes": {}},
        {
            "action": "sla.breached",
            "at": "2026-01-01T10:05:00.250000+00:00",
            "changes": {"clock": "first_response", "due_at": "2026-01-01T10:05:00+00:00"},
        },
    ]
    assert breach_lateness(history) == pytest.approx(0.25)
    assert breach_lateness(history[:1]) is None
    written = [{"action": "sla.breached", "at": "x", "changes": {"lateness_seconds": 0.5}}]
    assert breach_lateness(written) == 0.5
