"""Reads of the analytics read model: rollup cells for periods and series, the fact rows
of open tickets for the backlog and agents' current load. Never a scan of the tickets.

A period is whole UTC hours: every hour that starts in [start, end) counts; figures on
exactly two dimensions (a tag counts as one) are whole UTC days, the days those hours fall
in, since pairs are kept per day only (`counted`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import and_, bindparam, case, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.analytics.facts import (
    BACKLOG,
    DAILY,
    FILTERS,
    NONE_VALUE,
    READY,
    READY_HOUR,
    TAG,
    VALUE_JOIN,
    dimension_value,
    events_of,
    hour_of,
    nest,
    pair_dimension,
)
from helpdesk.analytics.measures import Suppressor, complements, measures, merge, protect
from models.analytics import AnalyticsRollup, TicketFact
from models.enums import Priority, TicketStatus
from models.ticket import TicketTag

Interval = Literal["hour", "day", "week", "month"]
Dimension = Literal["status", "priority", "category", "assignee"]
BACKLOG_STATUSES = (TicketStatus.OPEN.value, TicketStatus.IN_PROGRESS.value)
# Age buckets of the open backlog: label, lower bound (inclusive), upper bound (exclusive).
AGE_BUCKETS: tuple[tuple[str, timedelta, timedelta | None], ...] = (
    ("lt_1d", timedelta(0), timedelta(days=1)),
    ("1d_3d", timedelta(days=1), timedelta(days=3)),
    ("3d_7d", timedelta(days=3), timedelta(days=7)),
    ("7d_30d", timedelta(days=7), timedelta(days=30)),
    ("gte_30d", timedelta(days=30), None),
)
PRIORITY_WEIGHT = {"LOW": 1, "MEDIUM": 2, "HIGH": 4, "CRITICAL": 8}  # as assignment's


@dataclass(frozen=True, slots=True)
class Scope:
    """A period and its filters: (dimension, value) pairs on distinct dimensions of
    `FILTERS` (all must hold), and a tag (`tag` its blind token, `label` the approved tag)."""

    start: datetime
    end: datetime
    filters: tuple[tuple[str, str], ...] = ()
    tag: str = ""
    label: str = ""

    def narrowed(self, dim: str, value: str) -> Scope:
        """The same scope with one more filter (replacing one on the same dimension)."""
        kept = tuple((d, v) for d, v in self.filters if d != dim)
        return replace(self, filters=(*kept, (dim, value)))


def interval_start(at: datetime, interval: Interval) -> datetime:
    hour = hour_of(at)
    if interval == "hour":
        return hour
    day = hour.replace(hour=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    return day.replace(day=1)


def _next(start: datetime, interval: Interval) -> datetime:
    if interval == "hour":
        return start + timedelta(hours=1)
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def _spans(scope: Scope) -> list[tuple[str, datetime, datetime]]:
    """The period as ranges of hourly and daily cells: whole UTC days inside it read their
    daily cell, the hours at either edge their hourly cells."""
    first, last = hour_of(scope.start), _last_hour(scope)
    day_from = first.replace(hour=0)
    if day_from < first:
        day_from += timedelta(days=1)
    day_to = last.replace(hour=0)
    if day_from >= day_to:
        return [("", first, last)]
    spans = [("", first, day_from), (DAILY, day_from, day_to), ("", day_to, last)]
    return [span for span in spans if span[1] < span[2]]


def named_dimensions(scope: Scope, group: str | None) -> int:
    """How many dimensions a read names: its filters, its group, its tag."""
    return len(dict(scope.filters).keys() | ({group} if group else set())) + bool(scope.tag)


def counted(scope: Scope, group: str | None = None, *, hourly: bool = False) -> Scope:
    """The period a read's figures count: the hours that start in [start, end), or, for
    two dimensions (their pair's cells, kept per day only) unless `hourly` (a series by
    hour, then computed from the fact rows), the UTC days those hours fall in."""
    first, last = hour_of(scope.start), _last_hour(scope)
    if hourly or named_dimensions(scope, group) != 2:
        return replace(scope, start=first, end=last)
    day_end = last if last.hour == 0 else last.replace(hour=0) + timedelta(days=1)
    return replace(scope, start=first.replace(hour=0), end=day_end)


def _tagged(token: str) -> Any:
    return TicketFact.ticket_id.in_(select(TicketTag.ticket_id).where(TicketTag.token == token))


def _last_hour(scope: Scope) -> datetime:
    """The end of the period's last hour (an hour that starts before `end` counts whole)."""
    last = hour_of(scope.end)
    return last + timedelta(hours=1) if last < scope.end else last


async def _fact_cells(
    session: AsyncSession, scope: Scope, group: str | None
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """Hourly cells (hour, group, metrics) computed from the fact rows of the tickets within
    every filter, with the rollups' own definitions (`events_of`): for three or more
    dimensions at once (the rollups are kept per pair), a tag with two or more, or a tag
    whose cells are not complete (approved since the last rebuild).
    Reads every fact row within the filters created before the period's end (found by the
    tag's token or the facts' indexes): the cost grows with the number of those tickets."""
    first, last = hour_of(scope.start), _last_hour(scope)
    columns = TicketFact.__table__.columns
    query = select(*columns).where(*fact_filter(scope), TicketFact.created_at < last)
    cells: dict[tuple[datetime, str], Counter[str]] = {}
    for row in (await session.execute(query)).mappings():
        fact: Mapping[str, Any] = dict(row)
        key = "" if group is None else dimension_value(fact, group)
        for at, measured in events_of(fact):
            hour = hour_of(at)
            if first <= hour < last:
                cells.setdefault((hour, key), Counter()).update(measured)
    return [(hour, key, nest(counts)) for (hour, key), counts in sorted(cells.items())]


async def _tag_ready(session: AsyncSession, token: str) -> bool:
    """Whether the tag's cells count every ticket carrying it (`facts.READY`)."""
    table = AnalyticsRollup.__table__.c
    query = select(table.value).where(
        table.dim == READY, table.hour == READY_HOUR, table.value == token
    )
    return (await session.scalar(query)) is not None


async def _seen_values(session: AsyncSession, dim: str, spans: list[Any]) -> list[str]:
    """The values of a single dimension that have a cell in the spans (a category or an
    agent that counted nothing in the period has no pair cell in it either)."""
    table = AnalyticsRollup.__table__.c
    found: set[str] = set()
    for suffix, start, end in spans:
        query = select(table.value).distinct()
        query = query.where(table.dim == dim + suffix, table.hour >= start, table.hour < end)
        found.update(await session.scalars(query))
    return sorted(found)


async def _cells(
    session: AsyncSession,
    scope: Scope,
    group: str | None,
    *,
    hourly_only: bool = False,
    light_days: bool = False,
) -> list[tuple[datetime, str, Any]]:
    """The rollup rows (hour, group value, metrics) of a period within the scope's filters.
    A single dimension's cells answer a filter or group on it, a pair's cells any two
    dimensions (filters, or a filter and the group); three or more dimensions are computed
    from the fact rows (`_fact_cells`); an approved tag reads its own cells (alone, or
    paired with one dimension) once a rebuild marked them complete. `light_days`: daily
    cells as their summaries, without histograms (each will be a point of its own).
    The period read is `counted(scope, group, hourly=hourly_only)`."""
    scope = counted(scope, group, hourly=hourly_only)
    if hourly_only and named_dimensions(scope, group) == 2:
        return await _fact_cells(session, scope, group)  # pairs have no hourly cells
    wanted = dict(scope.filters)
    dims = sorted(wanted.keys() | ({group} if group else set()), key=FILTERS.index)
    if scope.tag:
        # An approved tag's cells, alone or paired with one dimension, once complete.
        if len(dims) > 1 or not await _tag_ready(session, scope.tag):
            return await _fact_cells(session, scope, group)
        wanted[TAG] = scope.tag
        dims.append(TAG)
    elif len(dims) > 2:
        return await _fact_cells(session, scope, group)
    spans = [("", hour_of(scope.start), scope.end)] if hourly_only else _spans(scope)
    table = AnalyticsRollup.__table__.c
    dim, part = "all", 0
    values: list[str] | None = None
    if len(dims) == 1:
        dim = dims[0]
        values = [wanted[dim]] if dim in wanted else None
    elif len(dims) == 2:
        a, b = dims
        dim, part = pair_dimension(a, b), dims.index(group) if group else 0
        if a in wanted and b in wanted:
            values = [f"{wanted[a]}{VALUE_JOIN}{wanted[b]}"]
        else:
            # One part filtered, the other the group: the exact pair values, for each value
            # of the group seen in the period (found by the index on (dim, value, hour)).
            # No prefix match: PostgreSQL's collation need not order `|` plainly.
            other = b if a in wanted else a
            seen = await _seen_values(session, other, spans)
            values = [
                f"{wanted[a]}{VALUE_JOIN}{v}" if a in wanted else f"{v}{VALUE_JOIN}{wanted[b]}"
                for v in seen
            ]
    rows: list[tuple[datetime, str, Any]] = []
    for suffix, start, end in spans:
        metrics: Any = table.metrics
        if light_days and suffix == DAILY:
            metrics = func.coalesce(table.summary, table.metrics)
        query = select(table.hour, table.value, metrics).where(
            table.dim == dim + suffix, table.hour >= start, table.hour < end
        )
        if values is not None:
            query = query.where(table.value.in_(values))
        for hour, value, found in (await session.execute(query)).all():
            key = value.split(VALUE_JOIN)[part] if len(dims) == 2 else value
            rows.append((hour, key if group else "", found))
    return rows


async def period(session: AsyncSession, scope: Scope, k: int) -> dict[str, Any]:
    """Every measure of the period (`counted(scope)`), within the scope's filters."""
    rows = await _cells(session, scope, None)
    return measures(merge(metrics for _, _, metrics in rows), k)


async def series(
    session: AsyncSession, scope: Scope, interval: Interval, group_by: Dimension | None, k: int
) -> list[dict[str, Any]]:
    """One point per interval (every interval of the period `counted`) and group seen in it."""
    scope = counted(scope, group_by, hourly=interval == "hour")
    rows = await _cells(
        session, scope, group_by, hourly_only=interval == "hour", light_days=interval == "day"
    )
    cells: dict[tuple[datetime, str], list[dict[str, Any]]] = {}
    groups: set[str] = set()
    starts: dict[datetime, datetime] = {}
    for hour, row_value, metrics in rows:
        group = row_value if group_by else "all"
        groups.add(group)
        start = starts.get(hour)
        if start is None:
            start = starts[hour] = interval_start(hour, interval)
        cells.setdefault((start, group), []).append(metrics)
    # A point made of one cell (a day, by day) is read as it is, without a merge.
    sums = {key: found[0] if len(found) == 1 else merge(found) for key, found in cells.items()}
    points = []
    ordered = sorted(groups)
    start = interval_start(scope.start, interval)
    empty: dict[str, Any] = {}
    while start < scope.end:
        found = [sums.get((start, group), empty) for group in ordered]
        # The groups of an interval add up to its ungrouped figure (another request):
        # complementary suppression, so that figure cannot give a suppressed group away.
        hide = complements(found, k) if group_by else [frozenset()] * len(found)
        for group, metrics, also in zip(ordered, found, hide, strict=True):
            point = {"start": start, "group": group}
            point.update(measures(metrics, k, also))
            points.append(point)
        start = _next(start, interval)
    return points


def fact_filter(scope: Scope) -> list[Any]:
    """The scope's filters as conditions on the fact rows."""
    out = [_tagged(scope.tag)] if scope.tag else []
    for dim, value in scope.filters:
        if dim == "status":
            out.append(TicketFact.status == value)
        elif dim == "priority":
            out.append(TicketFact.priority == value)
        else:
            column = TicketFact.category_id if dim == "category" else TicketFact.assignee_id
            out.append(column.is_(None) if value == NONE_VALUE else column == uuid.UUID(value))
    return out


OpenCounts = dict[tuple[str, str], list[int]]  # (status, priority) -> [count, *by age]


def _add(into: OpenCounts, key: tuple[str, str], counts: list[int]) -> None:
    row = into.setdefault(key, [0] * (1 + len(AGE_BUCKETS)))
    for i, n in enumerate(counts):
        row[i] += n


def _by_age(created: Any, now: datetime) -> list[Any]:
    """Per age bucket, 1 when `created` (a column) falls in it at `now`, else 0, summed."""
    ages = []
    for _, low, high in AGE_BUCKETS:
        within = [created <= now - low]
        if high is not None:
            within.append(created > now - high)
        ages.append(func.sum(case((and_(*within), 1), else_=0)))
    return ages


async def _open_facts(session: AsyncSession, conditions: list[Any], now: datetime) -> OpenCounts:
    """Tickets within the conditions (which keep open ones only) by status and priority,
    with age buckets, counted from their fact rows (the index on status, priority,
    created)."""
    query = (
        select(
            TicketFact.status,
            TicketFact.priority,
            func.count(),
            *_by_age(TicketFact.created_at, now),
        )
        .where(*conditions)
        .group_by(TicketFact.status, TicketFact.priority)
    )
    out: OpenCounts = {}
    for status, priority, count, *by_age in (await session.execute(query)).all():
        _add(out, (status, priority), [int(count), *(int(n or 0) for n in by_age)])
    return out


def _at(name: str) -> Any:
    return bindparam(name, type_=TicketFact.__table__.c.created_at.type)


@cache
def _open_cells_queries() -> tuple[Any, Any]:
    """The two statements of `_open_cells`, built once (the edge days' 40 ranges cost
    milliseconds to build in SQLAlchemy): bound `t<j>` = now - the lower bound of age bucket
    j (the buckets are contiguous: the next one's is its upper bound), `d<j>` and `e<j>` the
    start and end of the day holding it."""
    edge_count = len(AGE_BUCKETS)
    table = AnalyticsRollup.__table__.c
    opened = table.metrics["open"].as_integer()
    thresholds = [_at(f"t{j}") for j in range(edge_count)]

    def bucket(column: Any, j: int) -> Any:
        older = [column > thresholds[j + 1]] if j + 1 < edge_count else []
        return and_(column <= thresholds[j], *older)

    days = [_at(f"d{i}") for i in range(edge_count)]
    cells = (
        select(
            table.value,
            func.sum(opened),
            *(func.sum(case((bucket(table.hour, j), opened), else_=0)) for j in range(edge_count)),
        )
        .where(table.dim == BACKLOG, table.hour.not_in(days))
        .group_by(table.value)
    )
    # One range of the index (status, priority, created) per status, priority and edge day,
    # each its own SELECT of a UNION ALL: the database seeks each range. (As one OR of the 40
    # ranges, SQLite with the statistics of a million facts chose to scan the whole index:
    # 1.4 s at 1M tickets, bench.analytics.)
    ranges = union_all(
        *(
            select(TicketFact.status, TicketFact.priority, TicketFact.created_at).where(
                TicketFact.status == status,
                TicketFact.priority == priority.value,
                TicketFact.created_at >= days[i],
                TicketFact.created_at < _at(f"e{i}"),
            )
            for status in BACKLOG_STATUSES
            for priority in Priority
            for i in range(edge_count)
        )
    ).subquery("edge_days")
    created = ranges.c.created_at
    facts = select(
        ranges.c.status,
        ranges.c.priority,
        func.count(),
        *(func.sum(case((bucket(created, j), 1), else_=0)) for j in range(edge_count)),
    ).group_by(ranges.c.status, ranges.c.priority)
    return cells, facts


async def _open_cells(session: AsyncSession, now: datetime) -> OpenCounts:
    """The open backlog from its cells (`facts.BACKLOG`: open tickets per creation day,
    status and priority; a few rows per day that still has open tickets), summed in the
    database. A day lies whole in one age bucket, but for the days holding a bucket's edge
    (now, now - 1, 3, 7 and 30 days), whose tickets are counted exactly from their fact
    rows."""
    params = {f"t{j}": now - low for j, (_, low, _) in enumerate(AGE_BUCKETS)}
    for j, (_, low, _) in enumerate(AGE_BUCKETS):
        params[f"d{j}"] = _day(now - low)
        params[f"e{j}"] = params[f"d{j}"] + timedelta(days=1)
    cells, facts = _open_cells_queries()
    out: OpenCounts = {}
    for value, total, *by_age in (await session.execute(cells, params)).all():
        status, priority = value.split(VALUE_JOIN)
        _add(out, (status, priority), [int(total or 0), *(int(n or 0) for n in by_age)])
    for status, priority, count, *by_age in (await session.execute(facts, params)).all():
        _add(out, (status, priority), [int(count), *(int(n or 0) for n in by_age)])
    return out


def _day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


async def backlog(session: AsyncSession, scope: Scope, now: datetime, k: int) -> dict[str, Any]:
    """Open tickets now (OPEN, IN_PROGRESS) by status and priority, with age buckets: from
    the backlog's cells, or within filters from the fact rows."""
    if scope.filters or scope.tag:
        conditions = [TicketFact.status.in_(BACKLOG_STATUSES), *fact_filter(scope)]
        found = await _open_facts(session, conditions, now)
    else:
        found = await _open_cells(session, now)
    rows = [
        (status, priority, counts[0], counts[1:])
        for (status, priority), counts in sorted(found.items())
        if counts[0]
    ]
    s = Suppressor(k, frozenset({"*"}))  # "*": hidden by complementary suppression
    # Groups add up to the total, ages to their group: complementary suppression in both.
    also = protect([count for _, _, count, _ in rows], k)
    groups = []
    for i, (status, priority, count, by_age) in enumerate(rows):
        hidden_ages = protect(by_age, k)
        groups.append(
            {
                "status": status,
                "priority": priority,
                "count": s.count(count, "*" if i in also else ""),
                "ages": {
                    label: s.count(n, "*" if j in hidden_ages else "")
                    for j, ((label, _, _), n) in enumerate(zip(AGE_BUCKETS, by_age, strict=True))
                },
            }
        )
    total = sum(count for _, _, count, _ in rows)
    return {"total": s.count(total), "groups": groups, "suppressed": s.suppressed}


async def agents(
    session: AsyncSession, scope: Scope, k: int, only: uuid.UUID | None
) -> list[dict[str, Any]]:
    """Per agent: measures of the tickets now assigned to them, by the period's events, and
    their current weighted load. `only`: that agent's row alone."""
    within = scope if only is None else scope.narrowed("assignee", str(only))
    rows = await _cells(session, within, "assignee")
    found: dict[str, list[dict[str, Any]]] = {}
    for _, row_value, metrics in rows:
        found.setdefault(row_value, []).append(metrics)
    sums = {agent: merge(cells) for agent, cells in found.items()}
    unassigned = sums.pop(NONE_VALUE, None)
    weight = case(
        *((TicketFact.priority == name, w) for name, w in PRIORITY_WEIGHT.items()), else_=0
    )
    load_query = (
        select(TicketFact.assignee_id, func.count(), func.coalesce(func.sum(weight), 0))
        .where(
            TicketFact.status.in_(BACKLOG_STATUSES),
            TicketFact.assignee_id.is_not(None),
            *fact_filter(within),
        )
        .group_by(TicketFact.assignee_id)
    )
    loads = {str(a): (int(n), int(w)) for a, n, w in (await session.execute(load_query)).all()}
    agents = sorted(sums.keys() | loads.keys())
    cells = [sums.get(agent, {}) for agent in agents]
    # The agents (and the unassigned, shown by a series by assignee) add up to the period's
    # figures, and their open tickets to the backlog: complementary suppression.
    hide = [frozenset[str]()] * len(agents)
    open_hidden: set[int] = set()
    if only is None:
        hide = complements([*cells, unassigned or {}], k)[: len(agents)]
        open_hidden = protect([loads.get(agent, (0, 0))[0] for agent in agents], k)
    out = []
    for i, agent in enumerate(agents):
        m = measures(cells[i], k, hide[i])
        s = Suppressor(k, frozenset({"*"}))  # "*": hidden by complementary suppression
        open_tickets, weighted = loads.get(agent, (0, 0))
        m["agent_id"] = agent
        m["open_tickets"] = s.count(open_tickets, "*" if i in open_hidden else "")
        m["weighted_load"] = None if s.suppressed else weighted
        m["suppressed"] = m["suppressed"] or s.suppressed
        out.append(m)
    return out
