"""Ticket facts and their hourly rollups, written in the transaction of each ticket change.

Every writer of a ticket row (creation, a persisted change, a recorded comment, an SLA
event) calls `record` after it changed the row, in its own transaction. `record` brings the
ticket's fact row up to date, then moves the ticket's contribution in `analytics_rollups`
from what the old fact said to what the new one says (a difference of two pure functions'
outputs), so the rollups always equal the sum of the contributions of the current facts,
which is exactly what `helpdesk analytics rebuild` recomputes from the rows.

A fact's measures are attributed to the ticket's CURRENT status, priority, category and
assignee (as Zendesk Explore reports ticket attributes), each at the UTC hour of the event
that defines it (created, first reply, resolution, breach, reopen, escalation), in the
cell of that hour and in the cell of that day.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.analytics.histogram import bucket, quantiles
from helpdesk.analytics.measures import QUANTILES
from helpdesk.business_hours import WorkingCalendar
from models.analytics import AnalyticsRollup, TicketFact
from models.enums import TicketStatus
from models.satisfaction import SatisfactionSurvey
from models.sla import BusinessCalendar, SlaPolicy
from models.ticket import Ticket, TicketTag

DIMENSIONS = ("all", "status", "priority", "category", "assignee")
# The dimensions a filter or a group may name, in the order of a pair's parts.
FILTERS = ("status", "priority", "category", "assignee")
# Cells are also kept per pair of them (dimension `status+priority`, value `OPEN|HIGH`):
# a filter on one grouped by another, or filters on two, is then a sum of cells. Pairs
# (a tag with a dimension included) are kept per UTC day only (migration 0010): most of a
# pair's values see one event in an hour, so hourly pair cells were two thirds of all rows;
# figures on two dimensions count whole UTC days (helpdesk.analytics.queries.counted).
PAIRS = tuple((a, b) for i, a in enumerate(FILTERS) for b in FILTERS[i + 1 :])
PAIR_JOIN = "+"
VALUE_JOIN = "|"
# Cells are kept per approved tag's blind token too (`tag`, and paired with each dimension:
# `priority+tag`, value `HIGH|<token>`). Those of a token are complete (every ticket carrying
# the tag counted) only once `helpdesk analytics rebuild` has run while it was approved: the
# rebuild writes its `READY` row; a writer that stops counting a token no longer approved
# deletes it. Readers use a tag's cells only with its READY row, the fact rows otherwise.
TAG = "tag"
# The open backlog: one cell per UTC day of creation (`hour` the day's start) and
# `status|priority` of the open tickets, counting them (`open`); ages come at read time.
BACKLOG = "backlog"
READY = "tag@ready"
READY_HOUR = datetime(1970, 1, 1, tzinfo=UTC)
# Each measure is kept twice: per UTC hour (dimension name as is) and per UTC day (the name
# with this suffix), so a long period reads one row per day and value, hours at its edges.
DAILY = "@d"
NONE_VALUE = "none"  # the dimension value of "no category" / "unassigned"
_DONE = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)
_LIVE = (TicketStatus.OPEN.value, TicketStatus.IN_PROGRESS.value)
_FIELDS = tuple(c.key for c in TicketFact.__table__.columns)

CellKey = tuple[str, datetime, str]  # (dimension, UTC hour, value)
Contributions = dict[CellKey, Counter[str]]


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _seconds(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds()))


def _value(value: uuid.UUID | None) -> str:
    return NONE_VALUE if value is None else str(value)


def values_of(fact: TicketFact) -> dict[str, Any]:
    """The fact's columns as a plain mapping (a snapshot to diff against)."""
    return {name: getattr(fact, name) for name in _FIELDS}


def _business(m: dict[str, int], name: str, seconds: int | None) -> None:
    if seconds is not None:
        m.update({f"{name}_n": 1, f"{name}_sum": seconds, f"{name}:{bucket(seconds):04d}": 1})


def events_of(f: Mapping[str, Any]) -> list[tuple[datetime, dict[str, int]]]:
    """The measures one ticket contributes, each at the moment that defines it."""
    created: datetime = f["created_at"]
    events: list[tuple[datetime, dict[str, int]]] = [(created, {"created": 1})]
    first_response = f["first_response_at"]
    fr_breached = f["first_response_breached_at"]
    if first_response is not None:
        s = _seconds(created, first_response)
        m = {"fr_n": 1, "fr_sum": s, f"fr:{bucket(s):04d}": 1}
        if fr_breached is None:
            m["fr_met"] = 1
        _business(m, "frb", f["first_response_business_seconds"])
        events.append((first_response, m))
    if fr_breached is not None:
        events.append((fr_breached, {"fr_breached": 1}))
    resolved = f["resolved_at"]
    res_breached = f["resolution_breached_at"]
    if resolved is not None:
        s = _seconds(created, resolved)
        m = {"resolved": 1, "res_n": 1, "res_sum": s, f"res:{bucket(s):04d}": 1}
        _business(m, "resb", f["resolution_business_seconds"])
        if f["reopen_count"]:
            m["resolved_reopened"] = 1
        if f["staff_replies"] == 1:
            m["one_touch"] = 1
        if res_breached is None:
            m["res_met"] = 1
        events.append((resolved, m))
    if res_breached is not None:
        events.append((res_breached, {"res_breached": 1}))
    if f["last_reopened_at"] is not None:
        events.append((f["last_reopened_at"], {"reopened": 1}))
    if f["escalated_at"] is not None and f["escalation_level"] > 0:
        events.append((f["escalated_at"], {"escalated": 1, f"esc:{f['escalation_level']}": 1}))
    if f["csat_sent_at"] is not None:
        events.append((f["csat_sent_at"], {"csat_sent": 1}))
        if f["csat_answered_at"] is not None and f["csat_rating"] is not None:
            good = 1 if f["csat_rating"] >= 4 else 0
            events.append((f["csat_answered_at"], {"csat_answered": 1, "csat_good": good}))
    return events


def dimension_value(f: Mapping[str, Any], dim: str) -> str:
    """The value under which a fact counts in a dimension (its current one)."""
    if dim == "status":
        return str(f["status"])
    if dim == "priority":
        return str(f["priority"])
    if dim == "category":
        return _value(f["category_id"])
    if dim == "assignee":
        return _value(f["assignee_id"])
    return ""


def pair_dimension(a: str, b: str) -> str:
    """The rollup dimension of a pair (`a` before `b` in `FILTERS`)."""
    return f"{a}{PAIR_JOIN}{b}"


def cell_dimensions(f: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (dimension, value) cells a fact counts in: `all`, each single dimension, each
    pair of them, and each approved tag it carries alone and with each dimension."""
    single = {dim: dimension_value(f, dim) for dim in FILTERS}
    dims = [("all", ""), *single.items()]
    dims += [(pair_dimension(a, b), f"{single[a]}{VALUE_JOIN}{single[b]}") for a, b in PAIRS]
    for token in f.get("tag_tokens") or ():
        dims.append((TAG, token))
        dims += [(pair_dimension(d, TAG), f"{single[d]}{VALUE_JOIN}{token}") for d in FILTERS]
    return dims


def contributions(f: Mapping[str, Any] | None) -> Contributions:
    """Rollup cells → measure deltas of one ticket's fact (empty for no fact)."""
    out: Contributions = {}
    if f is None:
        return out
    dims = cell_dimensions(f)
    for at, measures in events_of(f):
        hour = hour_of(at)
        day = hour.replace(hour=0)
        for dim, value in dims:
            if PAIR_JOIN not in dim:
                out.setdefault((dim, hour, value), Counter()).update(measures)
            out.setdefault((dim + DAILY, day, value), Counter()).update(measures)
    if f["status"] in _LIVE:
        day = hour_of(f["created_at"]).replace(hour=0)
        key = (BACKLOG, day, f"{f['status']}{VALUE_JOIN}{f['priority']}")
        out.setdefault(key, Counter())["open"] += 1
    return out


def nest(flat: Mapping[str, int]) -> dict[str, Any]:
    """The stored shape of a cell: counts at the top; each histogram as a dense array
    [first bucket, count, count, ...] (cheap to decode and to walk); the escalation levels
    as an object by level."""
    out: dict[str, Any] = {}
    hists: dict[str, dict[int, int]] = {}
    for name, v in flat.items():
        head, sep, tail = name.partition(":")
        if not sep:
            out[name] = v
        elif head == "esc":
            out.setdefault(head, {})[tail] = v
        else:
            hists.setdefault(head, {})[int(tail)] = v
    for head, counts in hists.items():
        first = min(counts)
        out[head] = [first] + [counts.get(b, 0) for b in range(first, max(counts) + 1)]
    return out


def summarise(nested: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's `summary`: its metrics without the histograms, plus each histogram's median
    and p90 (rounded seconds) under `q`. A point made of this one cell (a day of a series by
    day) reads only this: a few hundred bytes instead of the histograms' kilobytes."""
    out: dict[str, Any] = {}
    summary: dict[str, list[int | None]] = {}
    for name, v in nested.items():
        if isinstance(v, list):
            summary[name] = [None if q is None else round(q) for q in quantiles(v, (0.5, 0.9))]
        else:
            out[name] = v
    if summary:
        out[QUANTILES] = dict(sorted(summary.items()))
    return out


def stored_summary(dim: str, nested: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary a cell keeps: daily cells only (a point of a series by day is one daily
    cell; hourly cells are only ever merged, so a summary there would be dead weight)."""
    return summarise(nested) if dim.endswith(DAILY) else None


def flatten(nested: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, v in nested.items():
        if name == QUANTILES:
            continue  # derived from the histograms
        if isinstance(v, list):
            first = v[0]
            for i, count in enumerate(v[1:]):
                if count:
                    out[f"{name}:{first + i:04d}"] = int(count)
        elif isinstance(v, dict):
            for tail, count in v.items():
                out[f"{name}:{tail}"] = int(count)
        else:
            out[name] = int(v)
    return out


def difference(old: Contributions, new: Contributions) -> Contributions:
    """new - old, cell by cell, without zero entries."""
    delta: Contributions = {}
    for key in old.keys() | new.keys():
        cell: Counter[str] = Counter()
        before, after = old.get(key, Counter()), new.get(key, Counter())
        for name in before.keys() | after.keys():
            change = after.get(name, 0) - before.get(name, 0)
            if change:
                cell[name] = change
        if cell:
            delta[key] = cell
    return delta


def advance(
    fact: TicketFact,
    ticket: Ticket,
    *,
    at: datetime,
    staff_reply: bool = False,
    breaches: Iterable[tuple[str, datetime]] = (),
) -> None:
    """Bring a fact up to date with its ticket row after a change made at `at`."""
    if fact.status in _DONE and ticket.status in _LIVE:
        fact.reopen_count += 1
        fact.last_reopened_at = at
    fact.status = ticket.status
    fact.priority = ticket.priority
    fact.category_id = ticket.category_id
    fact.assignee_id = ticket.assignee_id
    fact.first_response_at = ticket.first_response_at
    fact.resolved_at = ticket.resolved_at
    if fact.first_resolved_at is None and ticket.resolved_at is not None:
        fact.first_resolved_at = ticket.resolved_at
    if staff_reply:
        fact.staff_replies += 1
    fact.escalation_level = ticket.escalation_level
    fact.escalated_at = ticket.escalated_at
    for clock, when in breaches:
        if clock == "first_response" and fact.first_response_breached_at is None:
            fact.first_response_breached_at = when
        elif clock == "resolution" and fact.resolution_breached_at is None:
            fact.resolution_breached_at = when


async def working_calendar(session: AsyncSession, priority: str) -> WorkingCalendar:
    """The calendar of the SLA policy of a priority (24x7 without one)."""
    calendar = await session.scalar(
        select(BusinessCalendar)
        .join(SlaPolicy, SlaPolicy.calendar_id == BusinessCalendar.id)
        .where(SlaPolicy.priority == priority)
    )
    if calendar is None:
        return WorkingCalendar.always()
    return WorkingCalendar.from_spec(calendar.time_zone, calendar.weekly_hours, calendar.holidays)


async def business_durations(
    session: AsyncSession, fact: TicketFact, old: Mapping[str, Any] | None
) -> None:
    """Business-time durations of the first reply and the resolution, computed when they
    happen (or change), under the calendar of the ticket's priority then."""
    before = old or {}
    jobs = []
    if fact.first_response_at != before.get("first_response_at"):
        jobs.append(("first_response_business_seconds", fact.first_response_at))
    if fact.resolved_at != before.get("resolved_at"):
        jobs.append(("resolution_business_seconds", fact.resolved_at))
    if not jobs:
        return
    calendar: WorkingCalendar | None = None
    for column, end in jobs:
        if end is None:
            setattr(fact, column, None)
            continue
        calendar = calendar or await working_calendar(session, fact.priority)
        seconds = calendar.working_time_between(fact.created_at, end).total_seconds()
        setattr(fact, column, max(0, int(seconds)))


def latest_survey(surveys: Iterable[SatisfactionSurvey]) -> SatisfactionSurvey | None:
    """The survey a fact reports: the latest resolution's that was sent, not cancelled."""
    live = [s for s in surveys if s.sent_at is not None and s.cancelled_at is None]
    return max(live, key=lambda s: s.resolution, default=None)


def apply_survey(fact: TicketFact, survey: SatisfactionSurvey | None) -> None:
    fact.csat_sent_at = survey.sent_at if survey else None
    fact.csat_answered_at = survey.answered_at if survey else None
    fact.csat_rating = survey.rating if survey else None


def new_fact(ticket: Ticket) -> TicketFact:
    return TicketFact(
        ticket_id=ticket.id,
        created_at=ticket.created_at,
        status=ticket.status,
        priority=ticket.priority,
        reopen_count=0,
        staff_replies=0,
        escalation_level=0,
    )


async def record(
    session: AsyncSession,
    ticket: Ticket,
    *,
    at: datetime,
    staff_reply: bool = False,
    breaches: Iterable[tuple[str, datetime]] = (),
    surveys: bool = False,
    tags: frozenset[str] = frozenset(),
) -> None:
    """Update the ticket's fact and the rollups, in the caller's transaction (which has
    written, and on PostgreSQL locked, the ticket row and its tags). `surveys`: the ticket's
    satisfaction surveys changed; the fact takes the latest one sent and not cancelled.
    `tags`: the approved tags' tokens (`ticket_tags.analytics_tokens`)."""
    fact = await session.get(TicketFact, ticket.id)
    old = None if fact is None else values_of(fact)
    if fact is None:
        fact = new_fact(ticket)
        session.add(fact)
    advance(fact, ticket, at=at, staff_reply=staff_reply, breaches=breaches)
    await business_durations(session, fact, old)
    if surveys:
        found = await session.scalars(
            select(SatisfactionSurvey).where(SatisfactionSurvey.ticket_id == ticket.id)
        )
        apply_survey(fact, latest_survey(list(found)))
    await count_tags(session, fact, tags)
    delta = difference(contributions(old), contributions(values_of(fact)))
    await apply_delta(session, delta)


async def count_tags(session: AsyncSession, fact: TicketFact, approved: frozenset[str]) -> None:
    """The approved tags the ticket carries now become the fact's `tag_tokens`. A token it
    counted under that is no longer approved leaves the token's cells incomplete: its READY
    row goes (its figures come from the fact rows until the next rebuild)."""
    before = set(fact.tag_tokens or ())
    now: list[str] = []
    if approved:
        found = await session.scalars(
            select(TicketTag.token).where(
                TicketTag.ticket_id == fact.ticket_id, TicketTag.token.in_(approved)
            )
        )
        now = sorted(set(found))
    if now != sorted(before):
        fact.tag_tokens = now or None
    dropped = sorted(before - approved)
    if dropped:
        ready = (AnalyticsRollup.dim == READY) & AnalyticsRollup.value.in_(dropped)
        await session.execute(delete(AnalyticsRollup).where(ready))


async def apply_delta(session: AsyncSession, delta: Contributions) -> None:
    """Add measure deltas to rollup cells in three statements: insert the missing cells
    (ON CONFLICT DO NOTHING), read them all FOR UPDATE (PostgreSQL locks them, in one
    statement, so concurrent writers queue on the hot cells instead of deadlocking), then
    one executemany of the new values; cells left empty are deleted."""
    if not delta:
        return
    table = cast(Table, AnalyticsRollup.__table__)
    keys = sorted(delta)
    await session.execute(
        _insert(session, table).on_conflict_do_nothing(),
        [{"dim": d, "hour": h, "value": v, "metrics": {}} for d, h, v in keys],
    )
    rows = await session.execute(
        select(table.c.dim, table.c.hour, table.c.value, table.c.metrics)
        .where(tuple_(table.c.dim, table.c.hour, table.c.value).in_(keys))
        .order_by(table.c.dim, table.c.hour, table.c.value)
        .with_for_update()
    )
    updates, empty = [], []
    for dim, hour, value, metrics in rows.all():
        merged = flatten(metrics or {})
        for name, change in delta.get((dim, hour, value), Counter()).items():
            total = int(merged.get(name, 0)) + change
            if total:
                merged[name] = total
            else:
                merged.pop(name, None)
        key = {"k_dim": dim, "k_hour": hour, "k_value": value}
        if merged:
            nested = nest(merged)
            updates.append({**key, "metrics": nested, "summary": stored_summary(dim, nested)})
        else:
            empty.append(key)
    where = (
        (table.c.dim == bindparam("k_dim"))
        & (table.c.hour == bindparam("k_hour", type_=table.c.hour.type))
        & (table.c.value == bindparam("k_value"))
    )
    if updates:
        await session.execute(update(table).where(where), updates)
    if empty:
        await session.execute(delete(table).where(where), empty)


def _insert(session: AsyncSession, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
