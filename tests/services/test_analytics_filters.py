"""Analytics filtered on several dimensions at once, on SQLite and PostgreSQL: figures a
manager reads for a hand-built set of tickets, and for every filter and group the rollup
cells (single and pair dimensions, approved tags) give exactly what the fact rows within
the filters give."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.analytics import facts as analytics_facts
from helpdesk.analytics import queries
from helpdesk.analytics.facts import FILTERS, NONE_VALUE, READY, flatten
from helpdesk.analytics.measures import merge
from helpdesk.analytics.queries import Scope
from helpdesk.analytics.rebuild import rebuild
from helpdesk.runtime import Runtime
from helpdesk.services import analytics, ticket_tags
from models.analytics import AnalyticsRollup, TicketFact
from models.category import Category
from models.enums import Role
from models.ticket import Ticket
from tests.support.analytics_timeline import START, Timeline, rollup_snapshot
from tests.support.factories import make_user


async def _category(rt: Runtime, name: str) -> uuid.UUID:
    async with rt.database.transaction() as session:
        category = Category(name=name, is_active=True)
        session.add(category)
        await session.flush()
        return category.id


async def _desk(timeline: Timeline, rt: Runtime) -> dict[str, Any]:
    """Seven tickets: HIGH in cardiology (three: resolved by A, in progress with B, new and
    unassigned), HIGH in billing (resolved by A), LOW in cardiology (resolved by A), HIGH
    without a category (with A), LOW in billing (new)."""
    cardiology, billing = await _category(rt, "Cardiology"), await _category(rt, "Billing")
    other = (await make_user(rt, Role.SUPPORT_AGENT)).id
    plan: list[tuple[str, uuid.UUID | None, uuid.UUID | None, str]] = [
        ("HIGH", cardiology, timeline.agent, "RESOLVED"),
        ("HIGH", cardiology, other, "IN_PROGRESS"),
        ("HIGH", cardiology, None, "OPEN"),
        ("HIGH", billing, timeline.agent, "RESOLVED"),
        ("LOW", cardiology, timeline.agent, "RESOLVED"),
        ("HIGH", None, timeline.agent, "IN_PROGRESS"),
        ("LOW", billing, None, "OPEN"),
    ]
    for priority, category, agent, status in plan:
        t = await timeline.create(priority=priority, category_id=category)
        timeline.clock.advance(minutes=30)
        if agent is not None:
            await timeline.assign(t, agent)
            await timeline.reply(t)
            timeline.clock.advance(hours=2)
            await timeline.set_status(t, "IN_PROGRESS")
            if status == "RESOLVED":
                await timeline.set_status(t, "RESOLVED")
        timeline.clock.advance(hours=5)
    return {"cardiology": str(cardiology), "billing": str(billing), "other": str(other)}


def _scope(timeline: Timeline, *filters: tuple[str, str]) -> Scope:
    return Scope(START - timedelta(days=1), timeline.clock.now + timedelta(hours=1), filters)


@pytest.mark.parametrize("settings", [{"analytics_min_cell_size": 1}], indirect=True)
async def test_priority_and_category_together_count_the_tickets_that_match_both(
    timeline: Timeline, rt: Runtime
) -> None:
    ids = await _desk(timeline, rt)
    agent = str(timeline.agent)
    high_cardiology = _scope(timeline, ("priority", "HIGH"), ("category", ids["cardiology"]))
    answer = await analytics.overview(rt, high_cardiology)
    m = answer["measures"]
    assert (m["created"], m["resolved"], m["first_response"]["count"]) == (3, 1, 2)
    assert answer["backlog"]["total"] == 2  # in progress with B, and the new one
    assert {(g["status"], g["count"]) for g in answer["backlog"]["groups"]} == {
        ("OPEN", 1),
        ("IN_PROGRESS", 1),
    }

    series = await analytics.series(rt, high_cardiology, "month", "assignee")
    by_agent = {p["group"]: p["created"] for p in series["points"] if p["created"]}
    assert by_agent == {agent: 1, ids["other"]: 1, NONE_VALUE: 1}

    high = _scope(timeline, ("priority", "HIGH"))
    series = await analytics.series(rt, high, "month", "category")
    by_category = {p["group"]: p["created"] for p in series["points"] if p["created"]}
    assert by_category == {ids["cardiology"]: 3, ids["billing"]: 1, NONE_VALUE: 1}

    mine = _scope(timeline, ("assignee", agent))
    series = await analytics.series(rt, mine, "month", "category")
    by_category = {p["group"]: p["resolved"] for p in series["points"] if p["resolved"]}
    assert by_category == {ids["cardiology"]: 2, ids["billing"]: 1}

    resolved_high = _scope(timeline, ("status", "RESOLVED"), ("priority", "HIGH"))
    assert (await analytics.overview(rt, resolved_high))["measures"]["created"] == 2

    page = await analytics.agents(
        rt, high_cardiology, only=None, sort="agent_id", descending=False, page=1, page_size=10
    )
    rows = {r["agent_id"]: (r["created"], r["resolved"], r["open_tickets"]) for r in page["items"]}
    assert rows == {agent: (1, 1, 0), ids["other"]: (1, 0, 1)}


@pytest.mark.parametrize("settings", [{"analytics_min_cell_size": 1}], indirect=True)
async def test_two_dimensions_count_whole_utc_days_and_the_answer_says_so(
    timeline: Timeline, rt: Runtime
) -> None:
    cardiology = str(await _category(rt, "Cardiology"))
    await timeline.create(priority="HIGH", category_id=uuid.UUID(cardiology))  # 09:00
    timeline.clock.advance(hours=5)
    await timeline.create(priority="HIGH", category_id=uuid.UUID(cardiology))  # 14:00
    afternoon = Scope(START + timedelta(hours=3), START + timedelta(hours=7, minutes=30))
    day = START.replace(hour=0)

    high = await analytics.overview(rt, afternoon.narrowed("priority", "HIGH"))
    assert high["measures"]["created"] == 1  # hours: 12:00 to 17:00
    assert (high["from"], high["to"]) == (START + timedelta(hours=3), START + timedelta(hours=8))

    both = afternoon.narrowed("priority", "HIGH").narrowed("category", cardiology)
    answer = await analytics.overview(rt, both)
    assert answer["measures"]["created"] == 2  # the pair's daily cell: the whole day
    assert (answer["from"], answer["to"]) == (day, day + timedelta(days=1))
    by_day = await analytics.series(rt, both, "day", None)
    assert [(p["start"], p["created"]) for p in by_day["points"]] == [(day, 2)]

    # By hour, two dimensions are computed from the fact rows, to the hour.
    by_hour = await analytics.series(rt, both, "hour", None)
    assert by_hour["from"] == START + timedelta(hours=3)
    assert [p["start"] for p in by_hour["points"] if p["created"]] == [START + timedelta(hours=5)]


async def test_every_filter_and_group_of_the_rollups_equals_the_fact_rows(
    timeline: Timeline, rt: Runtime
) -> None:
    ids = await _desk(timeline, rt)
    values = {
        "status": ["OPEN", "IN_PROGRESS", "RESOLVED"],
        "priority": ["HIGH", "LOW"],
        "category": [ids["cardiology"], ids["billing"], NONE_VALUE],
        "assignee": [str(timeline.agent), ids["other"], NONE_VALUE],
    }
    # A period that cuts days at both edges: daily cells inside, hourly ones at the edges
    # (two dimensions count the whole days those edges fall in: `counted`).
    start, end = START + timedelta(hours=3), timeline.clock.now - timedelta(hours=2)
    checked = 0
    async with rt.database.read() as session:
        for i, first in enumerate(FILTERS):
            for second in (None, *FILTERS[i + 1 :]):
                for a in values[first]:
                    for b in values[second] if second else [None]:
                        filters = ((first, a),) + (((second, b),) if second else ())
                        scope = Scope(start, end, filters)
                        for group in (None, *FILTERS):
                            if second and group not in (None, first, second):
                                continue  # three dimensions: computed from the facts anyway
                            kept = await queries._cells(session, scope, group)
                            read = queries.counted(scope, group)
                            exact = await queries._fact_cells(session, read, group)
                            assert _by_group(kept) == _by_group(exact), (filters, group)
                            checked += 1
    assert checked > 100


def _by_group(rows: list[tuple[Any, str, dict[str, Any]]]) -> dict[str, dict[str, int]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for _, group, metrics in rows:
        found.setdefault(group, []).append(metrics)
    return {group: flatten(merge(cells)) for group, cells in found.items()}


TAGGED = {"analytics_min_cell_size": 1, "analytics_export_tags": ["Urgent-Care"]}


async def _ready(rt: Runtime) -> list[str]:
    async with rt.database.read() as session:
        found = await session.scalars(
            select(AnalyticsRollup.value).where(AnalyticsRollup.dim == READY)
        )
        return list(found)


@pytest.mark.parametrize("settings", [TAGGED], indirect=True)
async def test_an_approved_tag_has_its_own_cells_once_rebuilt_and_they_stay_exact(
    timeline: Timeline, rt: Runtime
) -> None:
    token = ticket_tags.tag_token(rt.blind_index, "urgent-care")
    made = []
    for i, (priority, tags) in enumerate(
        [("HIGH", ["urgent-care"]), ("LOW", ["Urgent-Care", "x"]), ("HIGH", ["other"])]
    ):
        t = await timeline.create(priority=priority)
        await timeline.change(t, "tagged", tags=tags)
        await timeline.assign(t)
        timeline.clock.advance(minutes=20 * (i + 1))
        await timeline.reply(t)
        made.append(t)
    start, end = START + timedelta(hours=-1), timeline.clock.now + timedelta(hours=30)

    async def equal_to_the_facts() -> None:
        async with rt.database.read() as session:
            for filters in ((), (("priority", "HIGH"),), (("status", "OPEN"),)):
                scope = Scope(start, end, filters, tag=token)
                for group in (None, "priority", "assignee"):
                    if filters and group and group != filters[0][0]:
                        continue
                    kept = await queries._cells(session, scope, group)
                    exact = await queries._fact_cells(session, scope, group)
                    assert _by_group(kept) == _by_group(exact), (filters, group)

    assert await _ready(rt) == []  # counted as the writers go, but not complete yet
    await equal_to_the_facts()  # (answered from the fact rows)
    async with rt.database.transaction() as session:
        await rebuild(session, ticket_tags.analytics_tokens(rt))
    assert await _ready(rt) == [token]
    m = (await analytics.overview(rt, Scope(start, end, tag=token)))["measures"]
    assert (m["created"], m["first_response"]["count"]) == (2, 2)
    await equal_to_the_facts()

    # Later changes move the tag's cells as any other: the tag removed from one ticket,
    # added to another, a resolution; the kept cells still equal a rebuild's.
    await timeline.change(made[0], "tagged", tags=["other"])
    await timeline.change(made[2], "tagged", tags=["urgent-care"])
    timeline.clock.advance(hours=3)
    await timeline.set_status(made[1], "RESOLVED")
    await equal_to_the_facts()
    incremental = await rollup_snapshot(rt)
    async with rt.database.transaction() as session:
        await rebuild(session, ticket_tags.analytics_tokens(rt))
    assert await rollup_snapshot(rt) == incremental
    series = await analytics.series(rt, Scope(start, end, tag=token), "month", "priority")
    assert {(p["group"], p["created"]) for p in series["points"]} == {("HIGH", 1), ("LOW", 1)}

    # A writer that no longer counts the tag (taken off the approved list) leaves its cells
    # incomplete: their READY row goes, and figures come from the fact rows again.
    async with rt.database.transaction() as session:
        ticket = await session.get(Ticket, made[2])
        assert ticket is not None
        await analytics_facts.record(session, ticket, at=timeline.clock.now, tags=frozenset())
    assert await _ready(rt) == []
    await equal_to_the_facts()


async def test_the_backlog_from_its_cells_equals_the_fact_rows_at_every_age(
    timeline: Timeline, rt: Runtime
) -> None:
    """Open tickets created over six weeks, some resolved or in progress: the backlog read
    from its per-day cells (exact fact counts on the days holding an age edge) equals the
    count over the fact rows, for a `now` every 7 hours over two months."""
    for day in range(42):
        for i in range(day % 3 + 1):
            t = await timeline.create(priority=("LOW", "HIGH", "CRITICAL")[i])
            if (day + i) % 4 == 1:
                await timeline.set_status(t, "IN_PROGRESS")
            if (day + i) % 5 == 2:
                await timeline.set_status(t, "RESOLVED")
            timeline.clock.advance(hours=5)
        timeline.clock.advance(hours=24 - 5 * (day % 3 + 1))
    open_now = TicketFact.status.in_(queries.BACKLOG_STATUSES)
    async with rt.database.read() as session:
        now, checked = START, 0
        while now < timeline.clock.now + timedelta(days=20):
            cells = await queries._open_cells(session, now)
            exact = await queries._open_facts(session, [open_now], now)
            assert {k: v for k, v in cells.items() if v[0]} == exact, now
            checked += 1
            now += timedelta(hours=7)
    assert checked > 200
    snapshot = await analytics.overview(rt, Scope(START, timeline.clock.now))
    assert snapshot["backlog"]["total"] == sum(
        v[0] for v in exact.values()
    )  # the overview reads the cells
