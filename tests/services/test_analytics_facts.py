"""Each analytics definition (README, "Analytics: definitions") tested on a ticket whose
timeline is built step by step through the real writers, on SQLite and PostgreSQL; and
the rollups kept incrementally equal the ones `helpdesk analytics rebuild` computes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from helpdesk.analytics import queries
from helpdesk.analytics.queries import Scope
from helpdesk.analytics.rebuild import rebuild
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from models.analytics import AnalyticsRollup, TicketFact
from models.enums import Role
from tests.support.analytics_timeline import (
    START,
    Clock,
    Timeline,
    install_clock,
    rollup_snapshot,
)
from tests.support.factories import make_user


async def overview(rt: Runtime, clock: Clock, k: int = 1, **scope: Any) -> dict[str, Any]:
    async with rt.database.read() as session:
        return await queries.period(
            session, Scope(START - timedelta(days=1), clock.now + timedelta(hours=1), **scope), k
        )


def near(value: float | None, expected: float) -> bool:
    """Within the histogram's 2% relative accuracy (and a second of rounding)."""
    return value is not None and abs(value - expected) <= expected * 0.02 + 1


async def test_first_reply_time_runs_from_creation_to_the_first_public_staff_reply(
    timeline: Timeline, rt: Runtime
) -> None:
    t = await timeline.create()
    timeline.clock.advance(minutes=10)
    await timeline.reply(t, internal=True)  # an internal note is no reply
    timeline.clock.advance(minutes=10)
    await timeline.reply(t, staff=False)  # nor is the requester's own comment
    timeline.clock.advance(minutes=70)
    await timeline.reply(t)  # 90 minutes after creation
    timeline.clock.advance(minutes=30)
    await timeline.reply(t)  # a second reply changes nothing
    m = await overview(rt, timeline.clock)
    assert m["created"] == 1
    assert m["first_response"]["count"] == 1
    assert near(m["first_response"]["median_seconds"], 5400)
    assert m["first_response"]["mean_seconds"] == 5400
    assert m["resolved"] == 0 and m["resolution"]["count"] == 0


async def test_full_resolution_time_runs_to_the_latest_resolution_and_reopens_count(
    timeline: Timeline, rt: Runtime
) -> None:
    t = await timeline.create()
    await timeline.assign(t)
    timeline.clock.advance(hours=1)
    await timeline.reply(t)
    timeline.clock.advance(hours=1)
    await timeline.set_status(t, "RESOLVED")  # first resolution at 2 h
    m = await overview(rt, timeline.clock)
    assert m["resolved"] == 1 and m["resolution"]["mean_seconds"] == 7200
    assert m["one_touch_rate"] == 1.0 and m["reopen_rate"] == 0.0

    timeline.clock.advance(hours=1)
    await timeline.set_status(t, "OPEN")  # the requester reopens at 3 h
    m = await overview(rt, timeline.clock)
    assert m["resolved"] == 0  # a reopened ticket is unresolved again
    assert m["reopened"] == 1

    timeline.clock.advance(hours=1)
    await timeline.reply(t)
    timeline.clock.advance(hours=1)
    await timeline.set_status(t, "RESOLVED")  # resolved again at 5 h
    m = await overview(rt, timeline.clock)
    assert m["resolved"] == 1
    assert m["resolution"]["mean_seconds"] == 5 * 3600
    assert near(m["resolution"]["median_seconds"], 5 * 3600)
    assert m["reopen_rate"] == 1.0
    assert m["one_touch_rate"] == 0.0  # two public staff replies


async def test_sla_achievement_is_met_over_met_plus_breached_per_clock(
    timeline: Timeline, rt: Runtime
) -> None:
    on_time = await timeline.create()
    late = await timeline.create()
    timeline.clock.advance(hours=1)
    await timeline.reply(on_time)
    timeline.clock.advance(hours=7)
    await timeline.breach(late, "first_response")
    timeline.clock.advance(hours=1)
    await timeline.reply(late)  # answered after the breach: still breached
    await timeline.set_status(late, "RESOLVED")
    m = await overview(rt, timeline.clock)
    assert m["sla"]["first_response"] == {"met": 1, "breached": 1, "achievement": 0.5}
    assert m["sla"]["resolution"] == {"met": 1, "breached": 0, "achievement": 1.0}
    await timeline.breach(late, "resolution")
    m = await overview(rt, timeline.clock)
    assert m["sla"]["resolution"] == {"met": 0, "breached": 1, "achievement": 0.0}


async def test_escalations_count_each_ticket_once_at_its_current_level(
    timeline: Timeline, rt: Runtime
) -> None:
    t = await timeline.create()
    timeline.clock.advance(hours=2)
    await timeline.escalate(t, 1)
    timeline.clock.advance(hours=2)
    await timeline.escalate(t, 2)
    m = await overview(rt, timeline.clock)
    assert m["escalations"] == {"count": 1, "by_level": {"2": 1}}


async def test_measures_follow_the_ticket_s_current_priority(
    timeline: Timeline, rt: Runtime
) -> None:
    t = await timeline.create(priority="LOW")
    await timeline.create(priority="LOW")
    await timeline.change(t, "edited", priority="HIGH")
    high = await overview(rt, timeline.clock, filters=(("priority", "HIGH"),))
    low = await overview(rt, timeline.clock, filters=(("priority", "LOW"),))
    assert (high["created"], low["created"]) == (1, 1)


async def test_small_cells_are_suppressed(timeline: Timeline, rt: Runtime) -> None:
    for _ in range(3):
        await timeline.create()
    m = await overview(rt, timeline.clock, k=5)
    assert m["created"] is None and m["suppressed"] is True
    assert m["resolved"] == 0  # zero singles out nobody
    m = await overview(rt, timeline.clock, k=3)
    assert m["created"] == 3 and m["suppressed"] is False


async def test_complementary_suppression_keeps_totals_from_revealing_a_small_cell(
    timeline: Timeline, rt: Runtime
) -> None:
    """k = 3. A manager reads a day's created tickets by priority (LOW 4, HIGH 1, MEDIUM 6)
    and the same day ungrouped (11): HIGH is suppressed, and LOW with it, so 11 - 6 = 5
    is all anyone learns about the two. The backlog's groups and total likewise."""
    for priority, n in (("LOW", 4), ("HIGH", 1), ("MEDIUM", 6)):
        for _ in range(n):
            await timeline.create(priority=priority)
    scope = Scope(START - timedelta(days=1), timeline.clock.now + timedelta(hours=1))
    async with rt.database.read() as session:
        grouped = await queries.series(session, scope, "day", "priority", 3)
        alone = await queries.series(session, scope, "day", None, 3)
        backlog = await queries.backlog(session, scope, timeline.clock.now, 3)
    day = START.replace(hour=0, minute=0, second=0, microsecond=0)
    points = {p["group"]: p for p in grouped if p["start"] == day}
    assert {g: p["created"] for g, p in points.items()} == {
        "HIGH": None,
        "LOW": None,
        "MEDIUM": 6,
    }
    assert points["LOW"]["suppressed"] and not points["MEDIUM"]["suppressed"]
    (total,) = [p["created"] for p in alone if p["start"] == day]
    assert total == 11  # 11 - 6 = LOW + HIGH: no single hidden cell
    groups = {g["priority"]: g["count"] for g in backlog["groups"]}
    assert backlog["total"] == 11 and groups == {"HIGH": None, "LOW": None, "MEDIUM": 6}
    # A second small cell already hides the first: nothing more is taken away.
    await timeline.create(priority="CRITICAL")
    async with rt.database.read() as session:
        backlog = await queries.backlog(session, scope, timeline.clock.now, 3)
    groups = {g["priority"]: g["count"] for g in backlog["groups"]}
    assert groups == {"CRITICAL": None, "HIGH": None, "LOW": 4, "MEDIUM": 6}


async def test_backlog_by_status_priority_and_age(timeline: Timeline, rt: Runtime) -> None:
    old = await timeline.create(priority="HIGH")
    timeline.clock.advance(days=2)
    await timeline.create(priority="HIGH")
    done = await timeline.create()
    await timeline.set_status(done, "RESOLVED")
    await timeline.set_status(old, "IN_PROGRESS")
    async with rt.database.read() as session:
        b = await queries.backlog(
            session, Scope(START, timeline.clock.now), timeline.clock.now, k=1
        )
    assert b["total"] == 2
    by = {(g["status"], g["priority"]): g for g in b["groups"]}
    assert by[("OPEN", "HIGH")]["ages"]["lt_1d"] == 1
    assert by[("IN_PROGRESS", "HIGH")]["ages"]["1d_3d"] == 1


async def test_a_series_by_day_reads_summaries_that_answer_like_the_histograms(
    timeline: Timeline, rt: Runtime
) -> None:
    """Each day of a series by day is read from its daily cell's summary (no histograms);
    the figures equal those computed from the histograms, and cells without a summary
    (written before migration 0008) still answer the same. Hourly cells keep none."""
    from helpdesk.analytics.facts import DAILY, stored_summary, summarise

    for _ in range(3):
        for i in range(4):
            t = await timeline.create(priority="HIGH" if i % 2 else "LOW")
            timeline.clock.advance(minutes=7 * (i + 1))
            await timeline.reply(t)
            timeline.clock.advance(hours=i + 1)
            await timeline.set_status(t, "RESOLVED")
        timeline.clock.advance(days=1)
    scope = Scope(START - timedelta(days=1), timeline.clock.now + timedelta(days=1))

    async def by_day() -> list[dict[str, Any]]:
        async with rt.database.read() as session:
            return await queries.series(session, scope, "day", "priority", 1)

    async with rt.database.read() as session:
        cells = (await session.scalars(select(AnalyticsRollup))).all()
        assert cells and all(c.summary == stored_summary(c.dim, c.metrics) for c in cells)
        # Daily cells only: an hourly cell is only ever merged with others.
        daily_cells = [c for c in cells if c.dim.endswith(DAILY)]
        assert daily_cells and all(c.summary == summarise(c.metrics) for c in daily_cells)
        assert all(c.summary is None for c in cells if not c.dim.endswith(DAILY))
        daily = [c for c in cells if c.dim == "priority@d" and c.metrics.get("res")]
        summaries = [c.summary or {} for c in daily]
        assert daily and all("res" not in m and m["q"]["res"] for m in summaries)
    from_summaries = await by_day()
    resolved = [p for p in from_summaries if p["resolved"]]
    assert resolved and all(p["resolution"]["median_seconds"] for p in resolved)
    async with rt.database.transaction() as session:
        await session.execute(update(AnalyticsRollup).values(summary=None))
    assert await by_day() == from_summaries


async def test_a_tag_filter_answers_like_the_rollups_of_the_same_tickets(
    timeline: Timeline, rt: Runtime
) -> None:
    """Tag figures come from the tagged tickets' fact rows; tagging exactly the HIGH tickets
    must give the figures the rollups give for priority HIGH."""
    from helpdesk.services import ticket_tags, tickets

    for i in range(6):
        priority = "HIGH" if i % 2 else "LOW"
        async with rt.database.transaction() as session:
            inserted = await tickets.insert_ticket(
                session,
                rt,
                requester_id=timeline.requester,
                data=tickets.NewTicket(
                    title="t",
                    description=None,
                    priority=priority,
                    tags=("urgent-care",) if priority == "HIGH" else ("other",),
                ),
                auto_assign=False,
            )
        t = inserted.id
        timeline.status[t] = "OPEN"
        await timeline.assign(t)
        timeline.clock.advance(minutes=10 * (i + 1))
        await timeline.reply(t)
        if i < 4:
            timeline.clock.advance(hours=i + 2)
            await timeline.set_status(t, "RESOLVED")
        if i == 1:
            await timeline.set_status(t, "OPEN")  # a reopen
        timeline.clock.advance(hours=13)
    token = ticket_tags.tag_token(rt.blind_index, "urgent-care")
    tagged = await overview(rt, timeline.clock, tag=token)
    high = await overview(rt, timeline.clock, filters=(("priority", "HIGH"),))
    assert tagged == high and tagged["created"] == 3 and tagged["reopened"] == 1
    scope = Scope(START - timedelta(days=1), timeline.clock.now + timedelta(hours=1))
    async with rt.database.read() as session:
        by_tag = await queries.series(
            session, Scope(scope.start, scope.end, tag=token), "day", "priority", 1
        )
        rollup = await queries.series(session, scope, "day", "priority", 1)
        backlog = await queries.backlog(
            session, Scope(scope.start, scope.end, tag=token), scope.end, 1
        )
    assert [p for p in by_tag if p["created"]] == [
        p for p in rollup if p["group"] == "HIGH" and p["created"]
    ]
    assert backlog["total"] == 2  # the reopened one and the never resolved one


async def test_incremental_rollups_equal_the_rebuilt_ones(timeline: Timeline, rt: Runtime) -> None:
    other = await make_user(rt, Role.SUPPORT_AGENT)
    ids = []
    for i, priority in enumerate(["LOW", "MEDIUM", "HIGH", "CRITICAL", "MEDIUM", "HIGH"]):
        t = await timeline.create(priority=priority)
        ids.append(t)
        timeline.clock.advance(minutes=37 * (i + 1))
        await timeline.assign(t, other.id if i % 2 else None)
        await timeline.reply(t)
        if i % 3 == 0:
            await timeline.breach(t, "resolution")
        timeline.clock.advance(hours=3)
        await timeline.set_status(t, "RESOLVED")
        if i % 2 == 0:
            timeline.clock.advance(hours=1)
            await timeline.set_status(t, "OPEN")
            await timeline.escalate(t, 1)
            await timeline.change(t, "edited", priority="CRITICAL")
            await timeline.reply(t)
            timeline.clock.advance(minutes=50)
            await timeline.set_status(t, "RESOLVED")
            await timeline.set_status(t, "CLOSED")
    incremental = await rollup_snapshot(rt)
    assert len(incremental[1]) == 6 and incremental[0]
    async with rt.database.transaction() as session:
        result = await rebuild(session)
    assert result.tickets == 6
    rebuilt = await rollup_snapshot(rt)
    assert rebuilt[1] == incremental[1]
    assert rebuilt[0] == incremental[0]


async def test_the_rebuild_command_restores_lost_rollups(
    settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`helpdesk analytics rebuild` (the CLI, on the settings' database) recomputes cells
    that were deleted, equal to what the writers had kept."""
    clock = install_clock(monkeypatch)
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    line = Timeline(runtime, clock, requester.id, agent.id)
    t = await line.create()
    clock.advance(hours=1)
    await line.reply(t)
    before = await rollup_snapshot(runtime)
    async with runtime.database.transaction() as session:
        await session.execute(delete(AnalyticsRollup))
        await session.execute(delete(TicketFact))
    from helpdesk import cli
    from helpdesk.settings import get_settings

    for key, value in {
        "HELPDESK_ENVIRONMENT": "test",
        "HELPDESK_VAR_DIR": str(settings.var_dir),
        "HELPDESK_DATABASE_URL": settings.database_url,
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(cli.run, ["analytics", "rebuild"]) == 0
    finally:
        get_settings.cache_clear()
    assert await rollup_snapshot(runtime) == before


def test_a_period_reads_whole_days_from_daily_cells_and_its_edges_from_hourly_ones() -> None:
    from helpdesk.analytics.queries import _spans

    start = START.replace(hour=9, minute=30)  # Monday 09:30
    end = START + timedelta(days=3, hours=4, minutes=10)  # Thursday 13:10
    day = timedelta(days=1)
    monday = START.replace(hour=0)
    assert _spans(Scope(start, end)) == [
        ("", START, monday + day),
        ("@d", monday + day, monday + 3 * day),
        ("", monday + 3 * day, end.replace(minute=0) + timedelta(hours=1)),
    ]
    inside = Scope(START.replace(hour=10), START.replace(hour=12))
    assert _spans(inside) == [("", START.replace(hour=10), START.replace(hour=12))]


async def test_an_edge_hour_counts_whole_and_a_later_hour_not_at_all(
    timeline: Timeline, rt: Runtime
) -> None:
    timeline.clock.advance(minutes=30)  # 09:30
    await timeline.create()
    async with rt.database.read() as session:
        for start, end, expected in (
            (START + timedelta(minutes=59), START + timedelta(days=2), 1),
            (START - timedelta(days=2), START + timedelta(minutes=1), 1),
            (START + timedelta(hours=1), START + timedelta(days=2), 0),
            (START - timedelta(days=2), START, 0),
        ):
            m = await queries.period(session, Scope(start, end), 1)
            assert m["created"] == expected, (start, end)


def test_migration_0007_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    import sqlite3

    from helpdesk.migrate import downgrade, upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "0007")
    columns = {
        row[1]
        for row in sqlite3.connect(tmp_path / "m.db").execute(
            "PRAGMA table_info(analytics_rollups)"
        )
    }
    assert "metrics" in columns and "summary" not in columns
    downgrade(url, "0006")
    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "m.db").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert not tables & {"ticket_facts", "analytics_rollups", "satisfaction_surveys"}
    upgrade(url)


async def test_concurrent_changes_keep_the_rollups_exact(timeline: Timeline, rt: Runtime) -> None:
    """Writers of different tickets meet on the same cells (the hour, the day, `all`): on
    PostgreSQL they queue on the cells' row locks; none is lost, none deadlocks."""
    ids = [await timeline.create(priority="HIGH") for _ in range(12)]
    await asyncio.gather(*(timeline.assign(t) for t in ids))
    await asyncio.gather(*(timeline.set_status(t, "IN_PROGRESS") for t in ids))
    await asyncio.gather(*(timeline.set_status(t, "RESOLVED") for t in ids))
    m = await overview(rt, timeline.clock)
    assert (m["created"], m["resolved"]) == (12, 12)
    kept = await rollup_snapshot(rt)
    async with rt.database.transaction() as session:
        await rebuild(session)
    assert await rollup_snapshot(rt) == kept


async def test_business_time_counts_only_the_calendar_s_working_hours(
    timeline: Timeline, rt: Runtime
) -> None:
    """MEDIUM tickets under a Monday-Friday 09:00-17:00 UTC calendar: created Friday 16:00,
    first reply Monday 10:00 (66 h of calendar time, 2 h of business time), resolved
    Monday 12:00 (68 h; 4 h)."""
    from helpdesk.services import sla as sla_service
    from models.enums import Priority
    from models.sla import SlaPolicy

    hours = [["09:00", "17:00"]]
    async with rt.database.transaction() as session:
        calendar = await sla_service.save_calendar(
            session, rt, calendar_id=None, name="office", time_zone="UTC",
            weekly_hours={d: hours for d in ("mon", "tue", "wed", "thu", "fri")}, holidays=[],
        )  # fmt: skip
        policy = await session.scalar(select(SlaPolicy).where(SlaPolicy.priority == "MEDIUM"))
        assert policy is not None
        await sla_service.save_policy(
            session, rt, policy_id=policy.id, priority=Priority.MEDIUM,
            first_response_minutes=policy.first_response_minutes,
            resolution_minutes=policy.resolution_minutes, calendar_id=calendar.id,
        )  # fmt: skip
    timeline.clock.now = START - timedelta(days=3) + timedelta(hours=7)  # Friday 16:00
    t = await timeline.create()
    timeline.clock.now = START + timedelta(hours=1)  # Monday 10:00
    await timeline.reply(t)
    await timeline.set_status(t, "IN_PROGRESS")
    timeline.clock.advance(hours=2)
    await timeline.set_status(t, "RESOLVED")
    async with rt.database.read() as session:
        m = await queries.period(
            session, Scope(START - timedelta(days=5), START + timedelta(days=1)), 1
        )
    assert m["first_response"]["mean_seconds"] == 66 * 3600
    assert m["first_response_business"]["mean_seconds"] == 2 * 3600
    assert m["resolution"]["mean_seconds"] == 68 * 3600
    assert m["resolution_business"]["mean_seconds"] == 4 * 3600
    assert near(m["resolution_business"]["median_seconds"], 4 * 3600)
    kept = await rollup_snapshot(rt)
    async with rt.database.transaction() as session:
        await rebuild(session)
    assert await rollup_snapshot(rt) == kept


def test_histogram_percentiles_are_within_two_percent_of_the_exact_ones() -> None:
    import math
    import random

    from helpdesk.analytics.histogram import bucket, quantiles

    rng = random.Random(3)
    values = [int(rng.lognormvariate(9, 1.5)) + 1 for _ in range(20_000)]
    hist: dict[str, int] = {}
    for v in values:
        key = f"{bucket(v):04d}"
        hist[key] = hist.get(key, 0) + 1
    ordered = sorted(values)
    for q, got in zip((0.5, 0.9, 0.99), quantiles(hist, (0.5, 0.9, 0.99)), strict=True):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert got is not None and abs(got - exact) <= 0.02 * exact


def test_dense_histograms_round_trip_merge_and_answer_like_sparse_ones() -> None:
    from helpdesk.analytics.facts import flatten, nest
    from helpdesk.analytics.histogram import quantiles
    from helpdesk.analytics.measures import merge

    a = {"created": 2, "fr:0100": 3, "fr:0104": 1, "esc:2": 1}
    b = {"created": 1, "fr:0098": 2, "fr:0101": 5}
    assert nest(a)["fr"] == [100, 3, 0, 0, 0, 1]
    assert flatten(nest(a)) == a
    merged = merge([nest(a), nest(b)])
    assert merged["created"] == 3 and merged["esc"] == {"2": 1}
    assert merged["fr"] == [98, 2, 0, 3, 5, 0, 0, 1]
    sparse = {98: 2, 100: 3, 101: 5, 104: 1}
    assert quantiles(merged["fr"], (0.5, 0.9)) == quantiles(sparse, (0.5, 0.9))


def test_counts_whose_sum_or_share_is_shown_are_suppressed_together() -> None:
    from helpdesk.analytics.measures import measures, protect

    assert protect([4, 1, 6], 3) == {0}  # the smallest shown one joins the small one
    assert protect([4, 1, 2, 6], 3) == set()  # two small ones: only their sum is known
    assert protect([0, 1, 0], 3) == set()  # nothing else to hide
    m = measures({"escalated": 12, "esc": {"1": 2, "2": 4, "3": 6}}, 3)
    assert m["escalations"] == {"count": 12, "by_level": {"1": None, "2": None, "3": 6}}
    # A share with one of its two counts shown would give the other away.
    m = measures({"fr_met": 2, "fr_breached": 10, "csat_sent": 10, "csat_answered": 1}, 3)
    assert m["sla"]["first_response"] == {"met": None, "breached": 10, "achievement": None}
    assert m["csat"]["sent"] == 10 and m["csat"]["response_rate"] is None
    m = measures({"created": 7, "resolved": 5}, 3, frozenset({"resolved"}))
    assert (m["created"], m["resolved"], m["suppressed"]) == (7, None, True)


async def test_the_export_computes_days_and_whole_seconds_in_the_database(
    timeline: Timeline, rt: Runtime
) -> None:
    """The export's rows come from SQL written per database: the same figures on both."""
    from helpdesk.analytics import export

    t = await timeline.create(priority="HIGH")
    await timeline.assign(t)
    timeline.clock.advance(seconds=1800.75)
    await timeline.reply(t)
    timeline.clock.advance(hours=23, seconds=0.5)
    await timeline.set_status(t, "RESOLVED")
    other = await timeline.create()
    scope = Scope(START - timedelta(days=1), timeline.clock.now + timedelta(hours=1))
    names = export.Pseudonyms(b"k" * 32)

    async def rows(kind: export.ExportRows) -> list[dict[str, Any]]:
        request = export.ExportRequest(scope, "jsonl", names, rows=kind)
        columns = export.COLUMNS if kind == "ticket" else export.EVENT_COLUMNS
        return [
            dict(zip(columns, row, strict=True))
            async for batch in export.stream(rt, request)
            for row in batch
        ]

    first, second = await rows("ticket")
    assert first["ticket"] == names.of("ticket", t) and second["ticket"] == names.of(
        "ticket", other
    )
    assert first["first_response_seconds"] == 1800  # 1800.75 s, truncated
    assert first["resolution_seconds"] == 1800 + 23 * 3600 + 1  # 84601.25 s
    assert (first["created_date"], first["resolved_date"]) == ("2026-03-02", "2026-03-03")
    assert first["agent"] == names.of("user", timeline.agent)
    assert (first["first_response_breached"], first["resolution_breached"]) == (False, False)
    assert second["first_response_seconds"] is None and second["resolved_date"] == ""
    events = await rows("event")
    assert [e["ticket"] for e in events].count(first["ticket"]) == 4
    resolved = [e for e in events if e["status_to"] == "RESOLVED"]
    assert len(resolved) == 1 and resolved[0]["event_date"] == "2026-03-03"
    assert resolved[0]["actor"] == names.of("user", timeline.agent)
