"""The ticket list's filters as SQL: who may see what, the field filters, and tags and
keywords as memberships of their side tables (probed, driven or checked per ticket)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, ScalarSelect, Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from helpdesk.errors import ValidationFailed
from helpdesk.policy import Caller, is_staff
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_list_limits, ticket_tags, ticket_text
from helpdesk.services.sla import sla_condition
from helpdesk.services.ticket_list_request import TicketFilter
from helpdesk.sql_hints import likely_rare
from models.enums import TicketStatus
from models.ticket import Ticket, TicketSearchToken, TicketTag


def filter_conditions(
    runtime: Runtime, viewer: Caller, filters: TicketFilter, *, split_statuses: bool
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Ticket.deleted_at.is_(None)]
    if not is_staff(viewer.role):
        # An end user's list is their own tickets, whatever else they ask for.
        conds.append(Ticket.requester_id == viewer.id)
    if filters.statuses and not split_statuses:
        conds.append(Ticket.status.in_([s.value for s in filters.statuses]))
    if filters.priorities:
        conds.append(Ticket.priority.in_([p.value for p in filters.priorities]))
    if filters.category_id is not None:
        conds.append(Ticket.category_id == filters.category_id)
    if filters.unassigned:
        conds.append(Ticket.assignee_id.is_(None))
    elif filters.assignee_id is not None:
        conds.append(Ticket.assignee_id == filters.assignee_id)
    if filters.requester_id is not None:
        conds.append(Ticket.requester_id == filters.requester_id)
    if filters.escalated is not None:
        conds.append(Ticket.escalated == filters.escalated)  # `IS` would not use an index
    if filters.sla is not None:
        conds.append(sla_condition(filters.sla, datetime.now(UTC)))  # type: ignore[arg-type]
    if filters.created_from is not None:
        conds.append(Ticket.created_at >= filters.created_from)
    if filters.created_to is not None:
        conds.append(Ticket.created_at <= filters.created_to)
    if filters.updated_from is not None:
        conds.append(Ticket.updated_at >= filters.updated_from)
    if filters.updated_to is not None:
        conds.append(Ticket.updated_at <= filters.updated_to)
    return conds


@dataclass(frozen=True, slots=True)
class Membership:
    """A ticket must have this tag or this search token (rows of a side table)."""

    ticket_id: InstrumentedAttribute[uuid.UUID]
    value_column: InstrumentedAttribute[str]
    value: str

    def rows(self) -> Select[uuid.UUID]:
        return select(self.ticket_id).where(self.value_column == self.value)

    def holds(self) -> ColumnElement[bool]:
        """Probed per candidate ticket (cheap while matches are dense)."""
        return exists().where(self.ticket_id == Ticket.id, self.value_column == self.value)

    def drives(self, also: Sequence[Membership] = ()) -> ColumnElement[bool]:
        """Candidates taken from the side table's index (cheap while matches are few);
        `also` are checked there too, so a rare combination of common words costs index
        probes rather than reads of ticket rows."""
        rows = self.rows()
        for other in also:
            # Aliased: two tags (or two words) probe the same table as the driving rows.
            side = aliased(other.ticket_id.class_)
            ticket_id = getattr(side, other.ticket_id.key)
            value = getattr(side, other.value_column.key)
            rows = rows.where(exists().where(ticket_id == self.ticket_id, value == other.value))
        if also:
            # Computed once for the page and for the count alike.
            hits = rows.cte("membership_hits").prefix_with("MATERIALIZED")
            return Ticket.id.in_(select(hits.c[self.ticket_id.key]))
        return Ticket.id.in_(rows)


def memberships_for(runtime: Runtime, filters: TicketFilter) -> list[Membership]:
    found = [
        Membership(TicketTag.ticket_id, TicketTag.token, token)
        for token in sorted({ticket_tags.tag_token(runtime.blind_index, t) for t in filters.tags})
    ]
    if filters.q is not None:
        tokens = ticket_text.query_tokens(runtime.blind_index, filters.q)
        if not tokens:
            raise ValidationFailed(
                f"q needs a word of at least {ticket_text.MIN_TOKEN} characters",
                details={"field": "q"},
            )
        found += [
            Membership(TicketSearchToken.ticket_id, TicketSearchToken.token, token)
            for token in tokens
        ]
    return found


async def probe_memberships(
    session: AsyncSession, memberships: list[Membership], cap: int
) -> list[int]:
    """How many tickets carry each tag/token, counted up to `cap` + 1 (index only)."""
    counts = [
        select(func.count()).select_from(m.rows().limit(cap + 1).subquery()).scalar_subquery()
        for m in memberships
    ]
    row = (await session.execute(select(*counts))).one()
    return [int(value) for value in row]


def capped_count(
    base: list[ColumnElement[bool]], filters: TicketFilter, split_statuses: bool
) -> ScalarSelect[int]:
    """How many tickets match, counted up to COUNT_CAP + 1 (beyond: an estimate)."""
    conds = list(base)
    if split_statuses and filters.statuses:
        wanted = Ticket.status.in_([s.value for s in filters.statuses])
        # Live statuses are a small share of all tickets (they pile up CLOSED): without the
        # hint SQLite counted through the priority index, 18 ms at 1M tickets against 1 ms.
        live = TicketStatus.CLOSED not in filters.statuses
        conds.append(likely_rare(wanted) if live else wanted)
    capped = select(Ticket.id).where(*conds).limit(ticket_list_limits.COUNT_CAP + 1).subquery()
    return select(func.count()).select_from(capped).scalar_subquery()
