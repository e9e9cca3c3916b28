"""`helpdesk analytics rebuild`: recompute every ticket fact and every rollup cell from the
ticket rows and their history, the same definitions the persisting transaction applies
(`helpdesk.analytics.facts`). Used after migration 0007 on a database that already holds
tickets, and by the test that proves incremental == rebuilt.

Reads tickets in id order a batch at a time; the rollups are summed in memory (one entry per
hour x dimension value that has data) and written at the end, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.analytics.facts import (
    READY,
    READY_HOUR,
    Contributions,
    contributions,
    latest_survey,
    nest,
    stored_summary,
    working_calendar,
)
from helpdesk.business_hours import WorkingCalendar
from models.analytics import AnalyticsRollup, TicketFact
from models.enums import STAFF_ROLES, TicketStatus
from models.satisfaction import SatisfactionSurvey
from models.ticket import Ticket, TicketHistory, TicketTag

BATCH = 1000
_DONE = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)
_LIVE = (TicketStatus.OPEN.value, TicketStatus.IN_PROGRESS.value)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    tickets: int
    cells: int


def fact_from_rows(
    ticket: Ticket,
    history: Sequence[TicketHistory],
    surveys: Sequence[SatisfactionSurvey] = (),
    tag_tokens: Sequence[str] = (),
) -> dict[str, Any]:
    """A ticket's fact from its row, its history entries (in time order), surveys and the
    tokens of the approved tags it carries."""
    first_resolved: datetime | None = None
    reopens = 0
    last_reopened: datetime | None = None
    replies = 0
    breaches: dict[str, datetime] = {}
    for entry in history:
        changes = entry.changes or {}
        status = changes.get("status")
        if isinstance(status, dict):
            old, new = status.get("old"), status.get("new")
            if new == TicketStatus.RESOLVED.value and first_resolved is None:
                first_resolved = entry.at
            if old in _DONE and new in _LIVE:
                reopens += 1
                last_reopened = entry.at
        if (
            entry.action == "comment_added"
            and changes.get("internal") is False
            and changes.get("author_role") in STAFF_ROLES
        ):
            replies += 1
        if entry.action == "sla.breached":
            clock = str(changes.get("clock"))
            if clock not in breaches:
                breaches[clock] = entry.at
    if first_resolved is None:
        first_resolved = ticket.resolved_at
    survey = latest_survey(surveys)
    return {
        "ticket_id": ticket.id,
        "created_at": ticket.created_at,
        "status": ticket.status,
        "priority": ticket.priority,
        "category_id": ticket.category_id,
        "assignee_id": ticket.assignee_id,
        "first_response_at": ticket.first_response_at,
        "first_resolved_at": first_resolved,
        "resolved_at": ticket.resolved_at,
        "reopen_count": reopens,
        "last_reopened_at": last_reopened,
        "staff_replies": replies,
        "escalation_level": ticket.escalation_level,
        "escalated_at": ticket.escalated_at,
        "first_response_breached_at": breaches.get("first_response"),
        "resolution_breached_at": breaches.get("resolution"),
        "csat_sent_at": survey.sent_at if survey else None,
        "csat_answered_at": survey.answered_at if survey else None,
        "csat_rating": survey.rating if survey else None,
        "tag_tokens": sorted(tag_tokens) or None,
    }


async def _business(
    session: AsyncSession, values: dict[str, Any], calendars: dict[str, WorkingCalendar]
) -> None:
    """Business-time durations under the calendar of the ticket's current priority."""
    for column, end in (
        ("first_response_business_seconds", values["first_response_at"]),
        ("resolution_business_seconds", values["resolved_at"]),
    ):
        if end is None:
            values[column] = None
            continue
        priority = values["priority"]
        if priority not in calendars:
            calendars[priority] = await working_calendar(session, priority)
        seconds = calendars[priority].working_time_between(values["created_at"], end)
        values[column] = max(0, int(seconds.total_seconds()))


async def rebuild(session: AsyncSession, tags: frozenset[str] = frozenset()) -> Rebuilt:
    """Replace every fact and rollup cell by the ones the rows say, in the caller's
    transaction. `tags`: the approved tags' tokens (`ticket_tags.analytics_tokens`); their
    cells are then complete, and marked so (`READY`)."""
    await session.execute(delete(TicketFact))
    await session.execute(delete(AnalyticsRollup))
    cells: Contributions = {}
    calendars: dict[str, WorkingCalendar] = {}
    count = 0
    after: uuid.UUID | None = None
    while True:
        query = select(Ticket).order_by(Ticket.id).limit(BATCH)
        if after is not None:
            query = query.where(Ticket.id > after)
        tickets = list(await session.scalars(query))
        if not tickets:
            break
        after = tickets[-1].id
        ids = [t.id for t in tickets]
        by_ticket: dict[uuid.UUID, list[TicketHistory]] = {i: [] for i in ids}
        entries = await session.scalars(
            select(TicketHistory)
            .where(TicketHistory.ticket_id.in_(ids))
            .order_by(TicketHistory.ticket_id, TicketHistory.at, TicketHistory.id)
        )
        for entry in entries:
            by_ticket[entry.ticket_id].append(entry)
        surveys: dict[uuid.UUID, list[SatisfactionSurvey]] = {}
        for survey in await session.scalars(
            select(SatisfactionSurvey).where(SatisfactionSurvey.ticket_id.in_(ids))
        ):
            surveys.setdefault(survey.ticket_id, []).append(survey)
        tagged: dict[uuid.UUID, list[str]] = {}
        if tags:
            found = await session.execute(
                select(TicketTag.ticket_id, TicketTag.token).where(
                    TicketTag.ticket_id.in_(ids), TicketTag.token.in_(tags)
                )
            )
            for ticket_id, token in found.all():
                tagged.setdefault(ticket_id, []).append(token)
        facts = [
            fact_from_rows(t, by_ticket[t.id], surveys.get(t.id, []), tagged.get(t.id, ()))
            for t in tickets
        ]
        for values in facts:
            await _business(session, values, calendars)
        for values in facts:
            for key, measures in contributions(values).items():
                cells.setdefault(key, Counter()).update(measures)
        await session.execute(insert(TicketFact), facts)
        session.expunge_all()
        count += len(tickets)
    rows: list[dict[str, Any]] = []
    for (dim, hour, value), m in cells.items():
        metrics = nest({k: v for k, v in m.items() if v})
        if metrics:
            rows.append(
                {
                    "dim": dim,
                    "hour": hour,
                    "value": value,
                    "metrics": metrics,
                    "summary": stored_summary(dim, metrics),
                }
            )
    ready = [{"dim": READY, "hour": READY_HOUR, "value": t, "metrics": {}} for t in sorted(tags)]
    for start in range(0, len(rows), BATCH):
        await session.execute(insert(AnalyticsRollup), rows[start : start + BATCH])
    if ready:
        await session.execute(insert(AnalyticsRollup), ready)
    return Rebuilt(tickets=count, cells=len(rows))
