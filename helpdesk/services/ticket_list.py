"""The ticket list: filters, keyword search, sorting, pagination, over the read model.
This module runs a list request step by step; the filters, the query plan, the cursors,
the keyword search and the listed rows live in the `ticket_list_*` modules beside it.

How it stays fast over a million tickets (SQLite and PostgreSQL alike):

* Every ordering has an index whose trailing columns are the sort key and ``id``
  (``ix_tickets_status_created``, ``ix_tickets_priority_created``, ``ix_tickets_updated``,
  ``ix_tickets_due``, ...). A filter of several values on an index's leading column
  (``status IN (OPEN, IN_PROGRESS)``) would make the database sort the whole matching set,
  so the query is split into *branches*, one per value, each ``ORDER BY ... LIMIT k`` (an
  index range scan that stops after k rows), combined with UNION ALL and merged (ordered
  and limited again) in the same statement, so that only the page's rows come back.
  Sorting by priority is the same trick over the four priority values, and sorting by due
  date splits tickets with and without a due date (no due date sorts last either way).
  A branch whose rows all have NULL in an index column (unassigned, no due date) also
  orders by that column, which lets PostgreSQL read the index in order.
* Pages are either ``page``/``page_size`` (offset, capped at ``MAX_OFFSET`` rows deep) or a
  keyset ``cursor`` (the sort key of the last row), which costs the same on every page.
* The total is counted up to ``COUNT_CAP`` rows, in the same statement as the page: beyond
  that ``total`` is ``COUNT_CAP`` and ``total_is_estimate`` is true (read it as "at least").
  An exact count of a broad filter would read hundreds of thousands of rows per request.
* Keyword search matches keyed digests of words (``TicketSearchToken``), all of them (AND),
  never plaintext and never a LIKE over ciphertext. A staff search by words alone (and a
  creation date range), in the default order, walks one word's index range, (token,
  ticket_created_at, ticket_id), which is in list order, and stops after a page; the other
  words are looked up in their own ranges (see ``ticket_list_search.TokenWalk``).
  Otherwise tags and words live in side tables, so one cheap index-only probe first counts
  (capped) the tickets carrying each of them: a rare one (``DRIVE_CAP``) supplies the
  candidates, which are then sorted; several together are intersected in the side tables'
  indexes (``INTERSECT_CAP``); when all are common the sort index is walked and each ticket
  checked (matches come quickly), and the total is not counted but reported as the lower
  bound the page proves (an estimate). The caps are in ``ticket_list_limits``.
* Titles are decrypted with the page's data keys, read in the same statement as the rows;
  no description.
* On PostgreSQL the engine turns off JIT and parallel workers for its connections (see
  ``helpdesk.db``): their start-up costs more than these LIMITed index scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, Row, Select, cast, func, literal_column, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.errors import ValidationFailed
from helpdesk.policy import Caller, is_staff
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_list_limits
from helpdesk.services.ticket_list_cursor import (
    CursorPosition,
    cursor_condition,
    decode_cursor,
    encode_cursor,
)
from helpdesk.services.ticket_list_filters import (
    Membership,
    capped_count,
    filter_conditions,
    memberships_for,
    probe_memberships,
)
from helpdesk.services.ticket_list_items import COLUMNS, TAGS, TicketListItem, list_items
from helpdesk.services.ticket_list_plan import (
    Branch,
    ListPlan,
    list_plan,
    merge_rows,
    merged_branches,
)
from helpdesk.services.ticket_list_request import PageRequest, SortField, TicketFilter
from helpdesk.services.ticket_list_search import TokenWalk, choose_token_walk, walks_tokens
from models.keys import DataKey as DataKeyRow
from models.ticket import Ticket, TicketSearchToken


@dataclass(frozen=True, slots=True)
class TicketPage:
    items: list[TicketListItem]
    total: int
    total_is_estimate: bool
    page: int | None
    page_size: int
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class _Narrowing:
    """How tags and keywords narrow the list: by walking a word's index range (`walk`),
    from a rare tag's or word's rows (`drive`), or checked ticket by ticket; and whether
    the total is counted (not when every tag or word is common)."""

    memberships: list[Membership]
    walk: TokenWalk | None = None
    drive: Membership | None = None
    counting: bool = True

    def conditions(self) -> list[ColumnElement[bool]]:
        if self.drive is not None:
            others = [m for m in self.memberships if m is not self.drive]
            return [self.drive.drives(others)]
        if self.walk is None:
            return [m.holds() for m in self.memberships]
        return []


@dataclass(frozen=True, slots=True)
class _PageQueries:
    """The page's candidate ids (one select per branch, each the branch's first rows) and
    the capped count (and, for a walk of several words, how far the count looked)."""

    parts: list[Select[Any]]
    count: ColumnElement[Any]
    scanned: ColumnElement[Any]


async def list_tickets(
    session: AsyncSession,
    runtime: Runtime,
    viewer: Caller,
    filters: TicketFilter,
    page: PageRequest,
) -> TicketPage:
    """One page of the tickets `viewer` may see that match `filters`. It only reads:
    `session` may be a read-only snapshot (`Database.read`), which on SQLite lets the list
    run without holding the database's one writer lock. The caller records the PHI read
    with `audit_list_read` in a write transaction of its own."""
    offset = _offset(runtime, page)
    desc = page.direction == "desc"
    plan = list_plan(filters, page.sort, page.direction)
    base = filter_conditions(runtime, viewer, filters, split_statuses=plan.splits_status)
    cursor = decode_cursor(page.cursor, page.sort, page.direction) if page.cursor else None
    limit = (0 if cursor else offset) + page.page_size + 1

    # (PostgreSQL: the engine turns JIT and parallel workers off for every connection,
    # see helpdesk.db: they take longer to start than these LIMITed scans take to finish.)
    narrowing = await _narrowing(session, runtime, viewer, filters, page.sort, desc)
    if narrowing is None:
        return _empty(page)
    base += narrowing.conditions()
    if narrowing.walk is not None:
        queries = _walk_queries(narrowing.walk, base, plan, cursor, desc, limit)
    else:
        queries = _branch_queries(plan, base, filters, cursor, narrowing.drive, desc, limit)
    if not narrowing.counting:
        queries = _PageQueries(queries.parts, cast(null(), Integer), queries.scanned)
    rows = await _read_rows(session, queries, plan, desc, limit)

    ordered = merge_rows(rows, plan, desc)
    window = ordered[offset if cursor is None else 0 :]
    has_more = len(window) > page.page_size
    window = window[: page.page_size]

    proven = (0 if cursor else offset) + len(window) + int(has_more)
    if narrowing.counting:
        total, estimate = await _total(session, queries, rows, proven)
    else:
        total, estimate = proven, True
    items = await list_items(runtime, window)
    next_cursor = None
    if has_more and window:
        last = window[-1]
        next_cursor = encode_cursor(
            page.sort, page.direction, plan.prefix_of(last), plan.inner_of(last)
        )
    return TicketPage(
        items=items,
        total=total,
        total_is_estimate=estimate,
        page=page.page if cursor is None else None,
        page_size=page.page_size,
        has_more=has_more,
        next_cursor=next_cursor,
    )


async def audit_list_read(
    session: AsyncSession, runtime: Runtime, count: int, filters: TicketFilter, page: PageRequest
) -> None:
    """The audit row of one list read, in `session` (a write transaction)."""
    await runtime.audit.record(
        session,
        "ticket.list",
        table="tickets",
        details={"count": count, "filters": filters.names(), "sort": page.sort},
    )


def _offset(runtime: Runtime, page: PageRequest) -> int:
    """Rows before the page; 422 for a page size out of bounds, a page number beside a
    cursor, or a page deeper than MAX_OFFSET rows."""
    if page.page_size < 1 or page.page_size > runtime.settings.max_page_size:
        raise ValidationFailed(
            f"page_size must be between 1 and {runtime.settings.max_page_size}",
            details={"field": "page_size"},
        )
    offset = (page.page - 1) * page.page_size
    if page.cursor is not None and page.page != 1:
        raise ValidationFailed("give either page or cursor", details={"field": "cursor"})
    if offset > ticket_list_limits.MAX_OFFSET:
        raise ValidationFailed(
            f"pages deeper than {ticket_list_limits.MAX_OFFSET} rows need the cursor of the"
            " previous page",
            details={"field": "page"},
        )
    return offset


async def _narrowing(
    session: AsyncSession,
    runtime: Runtime,
    viewer: Caller,
    filters: TicketFilter,
    sort: SortField,
    desc: bool,
) -> _Narrowing | None:
    """How the tags and keywords narrow the list; None when no ticket carries one of them."""
    memberships = memberships_for(runtime, filters)
    if memberships and walks_tokens(viewer, filters, sort):
        walk = await choose_token_walk(session, memberships, filters, desc)
        return _Narrowing(memberships, walk=walk)
    if memberships and is_staff(viewer.role):
        # (An end user's own tickets are few: their requester index bounds every probe.)
        cap = (
            ticket_list_limits.DRIVE_CAP
            if len(memberships) == 1
            else ticket_list_limits.INTERSECT_CAP
        )
        counts = await probe_memberships(session, memberships, cap)
        rarest = min(range(len(counts)), key=counts.__getitem__)
        if counts[rarest] == 0:
            return None
        if counts[rarest] <= cap:
            return _Narrowing(memberships, drive=memberships[rarest])
        # Every tag/word is common: pages fill fast, but an exact count would check
        # each candidate ticket; report what is known instead (flagged as an estimate).
        return _Narrowing(memberships, counting=False)
    return _Narrowing(memberships)


def _walk_queries(
    walk: TokenWalk,
    base: list[ColumnElement[bool]],
    plan: ListPlan,
    cursor: CursorPosition | None,
    desc: bool,
    limit: int,
) -> _PageQueries:
    """The page and the count of a keyword search walking a word's index range."""
    parts: list[Select[Any]] = []
    # The cursor is the (created_at, id) of a ticket: its tokens carry the same values.
    branch = Branch((), (), (TicketSearchToken.ticket_created_at, TicketSearchToken.ticket_id))
    extra = cursor_condition(branch, cursor, plan.prefix_desc, desc) if cursor else None
    if extra is not False:
        parts.append(walk.page(base, extra, desc).limit(limit))
    count = walk.count(base, desc)
    scanned = walk.scanned() if walk.others else cast(null(), Integer)
    return _PageQueries(parts, count, scanned)


def _branch_queries(
    plan: ListPlan,
    base: list[ColumnElement[bool]],
    filters: TicketFilter,
    cursor: CursorPosition | None,
    drive: Membership | None,
    desc: bool,
    limit: int,
) -> _PageQueries:
    """The page (one select per branch of the plan, after the cursor) and the count."""
    count = capped_count(base, filters, plan.splits_status)
    parts: list[Select[Any]] = []
    for branch in plan.branches:
        where = [*base, *branch.where]
        if cursor is not None:
            cond = cursor_condition(branch, cursor, plan.prefix_desc, desc)
            if cond is False:
                continue
            if cond is not None:
                where.append(cond)
        # When candidates come from a tag/word index, order by an expression no
        # index provides, so that the database reads those few candidates and sorts
        # them rather than walking the sort index in search of them.
        keys = [
            func.coalesce(c, c) if drive is not None and c is not Ticket.id else c
            for c in (*branch.lead, *branch.inner)
        ]
        order = [k.desc() if desc else k.asc() for k in keys]
        # Each branch yields its sort key, (prefix, key, id), for the merge below.
        prefix: list[ColumnElement[Any]] = [
            literal_column(str(v)).label(f"p{i}") for i, v in enumerate(branch.prefix)
        ]
        columns = (Ticket.id, *prefix, plan.key.label("k"))
        parts.append(select(*columns).where(*where).order_by(*order).limit(limit))
    return _PageQueries(parts, count, cast(null(), Integer))


async def _read_rows(
    session: AsyncSession, queries: _PageQueries, plan: ListPlan, desc: bool, limit: int
) -> list[Row[Any]]:
    """The page's rows (and a few past it), with their tags, data keys and the count."""
    parts = queries.parts
    if not parts:
        return []
    # Choose the page by id and sort key alone, then read the few chosen rows (a sort
    # over candidates never drags their ciphertext and tags along). The capped count,
    # each row's tags and its wrapped data key ride along: one round trip, not four.
    # (Materialised: SQLite would otherwise copy the outer query, count included,
    # into every branch of the union.)
    # Several branches are merged there too, so that only the page's rows come back
    # (reading a row costs more in Python, 15-35 us, than in the database).
    chosen = (
        (parts[0] if len(parts) == 1 else merged_branches(parts, plan, desc, limit))
        .cte("page_ids")
        .prefix_with("MATERIALIZED")
    )
    statement: Select[*tuple[Any, ...]] = (
        select(
            *COLUMNS,
            TAGS.label("tags"),
            DataKeyRow.kek_id,
            DataKeyRow.wrapped_key,
            queries.count.label("total"),
            queries.scanned.label("scanned"),
        )
        .join(chosen, Ticket.id == chosen.c.id)
        .outerjoin(DataKeyRow, DataKeyRow.id == Ticket.data_key_id)
    )
    return list((await session.execute(statement)).all())


async def _total(
    session: AsyncSession, queries: _PageQueries, rows: list[Row[Any]], proven: int
) -> tuple[int, bool]:
    """The total to show and whether it is an estimate ("at least"); `proven` is how many
    rows the page shows to exist."""
    if rows:
        counted, scanned = int(rows[0].total), rows[0].scanned
    else:  # no row came back (an empty page): count on its own
        statement = select(queries.count, queries.scanned)
        counted, scanned = (await session.execute(statement)).one()
    if counted > ticket_list_limits.COUNT_CAP:
        return ticket_list_limits.COUNT_CAP, True
    if scanned is not None and scanned > ticket_list_limits.SEARCH_WINDOW:
        # Counted in the newest part of the driving word's rows only: "at least".
        return max(counted, proven), True
    return counted, False


def _empty(page: PageRequest) -> TicketPage:
    return TicketPage(
        items=[],
        total=0,
        total_is_estimate=False,
        page=page.page if page.cursor is None else None,
        page_size=page.page_size,
        has_more=False,
        next_cursor=None,
    )
