"""Keyword search in list order: a staff search by words alone walks the rarest word's
index range, (token, ticket_created_at, ticket_id), and stops after a page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from helpdesk.policy import Caller, is_staff
from helpdesk.services import ticket_list_limits
from helpdesk.services.ticket_list_filters import Membership
from helpdesk.services.ticket_list_request import SortField, TicketFilter
from models.ticket import Ticket, TicketSearchToken


def walks_tokens(viewer: Caller, filters: TicketFilter, sort: SortField) -> bool:
    """Whether a staff keyword search in the default order (by creation time, either way)
    can walk a word's own index range, (token, ticket_created_at, ticket_id), and stop
    after a page. With other filters, the tickets' indexes are walked as before: the
    matches of a word and a status, say, may be far apart in the word's range."""
    return (
        is_staff(viewer.role)
        and sort == "created_at"
        and filters.q is not None
        and replace(filters, q=None, created_from=None, created_to=None) == TicketFilter()
    )


@dataclass(frozen=True, slots=True)
class TokenWalk:
    """Rows of the driving word's index, in list order, that carry the other words too."""

    driver: str
    others: tuple[str, ...]
    created_from: datetime | None
    created_to: datetime | None
    sqlite: bool

    def rows(self) -> Select[uuid.UUID, datetime]:
        rows = select(TicketSearchToken.ticket_id, TicketSearchToken.ticket_created_at).where(
            TicketSearchToken.token == self.driver
        )
        if self.created_from is not None:
            rows = rows.where(TicketSearchToken.ticket_created_at >= self.created_from)
        if self.created_to is not None:
            rows = rows.where(TicketSearchToken.ticket_created_at <= self.created_to)
        return rows

    def others_hold(self, row: Any) -> list[ColumnElement[bool]]:
        """Each other word, looked up row by row in its own index range, (token,
        ticket_created_at, ticket_id): the walk goes in that order, so the lookups land
        close together in a few pages (twice as fast as in the primary key, (ticket_id,
        token), where each lands anywhere).

        Written so that neither database strays: SQLite would choose the primary key for
        an equality on ticket_id (hence the expression), and PostgreSQL would turn EXISTS
        into a hash semi-join that reads the other word's whole range, up to hundreds of
        thousands of rows (hence a scalar subquery, evaluated row by row)."""
        conds: list[ColumnElement[bool]] = []
        for token in self.others:
            other = aliased(TicketSearchToken)
            ticket_id = other.ticket_id
            same_id = (
                func.coalesce(ticket_id, ticket_id) == row.ticket_id
                if self.sqlite
                else ticket_id == row.ticket_id
            )
            lookup = (
                select(other.token)
                .where(
                    other.token == token,
                    other.ticket_created_at == row.ticket_created_at,
                    same_id,
                )
                .scalar_subquery()
            )
            conds.append(lookup.is_not(None))
        return conds

    @staticmethod
    def order(desc: bool) -> list[ColumnElement[Any]]:
        keys = (TicketSearchToken.ticket_created_at, TicketSearchToken.ticket_id)
        return [k.desc() if desc else k.asc() for k in keys]

    def page(
        self, base: list[ColumnElement[bool]], after: ColumnElement[bool] | None, desc: bool
    ) -> Select[Any]:
        """Ids of the next rows of the list (the caller adds the limit)."""
        rows = (
            self.rows()
            .with_only_columns(TicketSearchToken.ticket_id.label("id"))
            .join(Ticket, Ticket.id == TicketSearchToken.ticket_id)
        )
        if after is not None:
            rows = rows.where(after)
        return rows.where(*self.others_hold(TicketSearchToken), *base).order_by(*self.order(desc))

    def count(self, base: list[ColumnElement[bool]], desc: bool) -> ScalarSelect[int]:
        """Matches counted up to COUNT_CAP + 1. Several words: among the driving word's
        first SEARCH_WINDOW rows only (matches of common words may be rare; `scanned`
        tells whether the window held every row)."""
        if not self.others:
            candidates = self.rows().subquery()
        else:
            candidates = (
                self.rows()
                .order_by(*self.order(desc))
                .limit(ticket_list_limits.SEARCH_WINDOW)
                .subquery()
            )
        matches = (
            select(Ticket.id)
            .select_from(candidates)
            .join(Ticket, Ticket.id == candidates.c.ticket_id)
            .where(*self.others_hold(candidates.c), *base)
            .limit(ticket_list_limits.COUNT_CAP + 1)
            .subquery()
        )
        return select(func.count()).select_from(matches).scalar_subquery()

    def scanned(self) -> ScalarSelect[int]:
        """The driving word's rows, counted up to SEARCH_WINDOW + 1 (index only)."""
        rows = self.rows().limit(ticket_list_limits.SEARCH_WINDOW + 1).subquery()
        return select(func.count()).select_from(rows).scalar_subquery()


async def choose_token_walk(
    session: AsyncSession, memberships: list[Membership], filters: TicketFilter, desc: bool
) -> TokenWalk:
    """The walk driven by the word whose range yields matches soonest: one with at most
    SEARCH_WINDOW rows (the walk is that short), else the rarest among the first
    SEARCH_SAMPLE tickets of the list (where the walk starts). One word needs no probe;
    several, one statement of index-only counts (a few thousand index entries at most)."""
    tokens = [m.value for m in memberships]
    if len(tokens) > 1:
        edge = (
            select(Ticket.created_at)
            .order_by(Ticket.created_at.desc() if desc else Ticket.created_at.asc())
            .offset(ticket_list_limits.SEARCH_SAMPLE)
            .limit(1)
            .scalar_subquery()
        )
        column = TicketSearchToken.ticket_created_at
        probes = []
        for token in tokens:
            rows = select(TicketSearchToken.ticket_id).where(TicketSearchToken.token == token)
            first = rows.where(column >= edge if desc else column <= edge)
            probes += [
                select(func.count())
                .select_from(rows.limit(ticket_list_limits.SEARCH_WINDOW + 1).subquery())
                .scalar_subquery(),
                select(func.count()).select_from(first.subquery()).scalar_subquery(),
            ]
        counts = list((await session.execute(select(*probes))).one())
        rank = {t: (counts[2 * i], counts[2 * i + 1]) for i, t in enumerate(tokens)}
        tokens.sort(key=rank.__getitem__)
    sqlite = session.bind is not None and session.bind.dialect.name == "sqlite"
    return TokenWalk(tokens[0], tuple(tokens[1:]), filters.created_from, filters.created_to, sqlite)
