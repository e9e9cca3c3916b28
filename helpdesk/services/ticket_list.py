"""The ticket list: filters, keyword search, sorting, pagination, over the read model.

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
  words are looked up in their own ranges (see ``_TokenWalk``). Otherwise tags and words
  live in side tables, so one cheap index-only probe first counts (capped) the tickets
  carrying each of them: a rare one (``DRIVE_CAP``) supplies the candidates, which are
  then sorted; several together are intersected in the side tables' indexes
  (``INTERSECT_CAP``); when all are common the sort index is walked and each ticket
  checked (matches come quickly), and the total is not counted but reported as the lower
  bound the page proves (an estimate).
* Titles are decrypted with the page's data keys, read in the same statement as the rows;
  no description.
* On PostgreSQL the engine turns off JIT and parallel workers for its connections (see
  ``helpdesk.db``): their start-up costs more than these LIMITed index scans.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    ScalarSelect,
    Select,
    and_,
    cast,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from helpdesk.crypto import DataKey, WrappedKey
from helpdesk.errors import DataIntegrityError, ValidationFailed
from helpdesk.policy import Caller, is_staff
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_tags, ticket_text
from models.enums import Priority, TicketStatus
from models.keys import DataKey as DataKeyRow
from models.ticket import Ticket, TicketSearchToken, TicketTag

SortField = Literal["created_at", "updated_at", "priority", "due_date"]
Direction = Literal["asc", "desc"]

# Counting stops here ("250+"): counting reads a row per match, and at a million tickets
# the count, not the page, is what costs (measured there: a cap of 1000 tripled the time
# of the statement of a queue filtered by status and priority).
COUNT_CAP = 250
# A tag or word on at most this many tickets is read from its own index (then sorted);
# a commoner one is checked ticket by ticket while walking the sort index, where matches
# come often enough that a page fills quickly (and counting them would not be cheap).
DRIVE_CAP = 4000
# Several tags/words together are usually rare even when each one is common: up to this
# many rows of the rarest one, their intersection is taken in the side tables' indexes.
INTERSECT_CAP = 20_000
# Keyword search in list order (see _TokenWalk), several words: matches are counted among
# this many first rows of the driving word (beyond: an estimate, "at least"; measured at a
# million tickets, checking a row for the other words costs 2-4 us), and words this rare
# drive the walk...
SEARCH_WINDOW = 500
# ...else the word with the fewest rows among this many first tickets of the list.
SEARCH_SAMPLE = 2000
MAX_OFFSET = 10_000

# Order of priorities in the list (the same ranks as Ticket.priority_rank); sorting by
# priority merges one branch per priority value, so the rank never needs an index.
PRIORITY_RANK: dict[Priority, int] = {
    Priority.LOW: 1,
    Priority.MEDIUM: 2,
    Priority.HIGH: 3,
    Priority.CRITICAL: 4,
}

# Only these columns are read: never the description, never more than a page needs.
_COLUMNS = (
    Ticket.id,
    Ticket.number,
    Ticket.data_key_id,
    Ticket.title_enc,
    Ticket.status,
    Ticket.priority,
    Ticket.category_id,
    Ticket.assignee_id,
    Ticket.requester_id,
    Ticket.escalated,
    Ticket.escalation_level,
    Ticket.escalated_at,
    Ticket.escalated_to,
    Ticket.due_date,
    Ticket.created_at,
    Ticket.updated_at,
    Ticket.resolved_at,
    Ticket.closed_at,
)


# Each row's tags, packed as "token:sealed" items: opened with the row's data key.
_TAGS = (
    select(
        func.aggregate_strings(
            TicketTag.token + ":" + TicketTag.tag_sealed, ticket_tags.PACK_SEPARATOR
        )
    )
    .where(TicketTag.ticket_id == Ticket.id)
    .correlate(Ticket)
    .scalar_subquery()
)


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """What to list. Several values of one field match any of them; tags must all match;
    the keyword query must match every word."""

    statuses: tuple[TicketStatus, ...] = ()
    priorities: tuple[Priority, ...] = ()
    category_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool = False
    requester_id: uuid.UUID | None = None
    tags: tuple[str, ...] = ()
    escalated: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    q: str | None = None
    sla: str | None = None  # "breached" | "at_risk"

    def names(self) -> list[str]:
        """Names of the filters in use (for the audit row: never their values)."""
        used = []
        for name in self.__slots__:
            value = getattr(self, name)
            if value not in (None, (), False):
                used.append(name)
        return sorted(used)


@dataclass(frozen=True, slots=True)
class PageRequest:
    sort: SortField = "created_at"
    direction: Direction = "desc"
    page: int = 1
    page_size: int = 25
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class TicketListItem:
    id: uuid.UUID
    number: int
    title: str | None
    status: str
    priority: str
    category_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    requester_id: uuid.UUID
    tags: list[str]
    escalated: bool
    escalation_level: int
    escalated_at: datetime | None
    escalated_to: uuid.UUID | None
    due_date: datetime | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class TicketPage:
    items: list[TicketListItem]
    total: int
    total_is_estimate: bool
    page: int | None
    page_size: int
    has_more: bool
    next_cursor: str | None


# --- query plan: branches merged in Python ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Branch:
    """One index-friendly slice of the result: extra conditions, the constant sort prefix
    its rows share, and the columns ordering rows inside it (the last one is ``id``).

    ``lead`` are columns that are NULL in every row of the branch, ordered by ahead of
    ``inner``: that changes nothing, but PostgreSQL takes ``x IS NULL`` for an equality
    only then, and reads (x, ...) indexes in order instead of sorting the whole range."""

    where: tuple[ColumnElement[bool], ...]
    prefix: tuple[int, ...]
    inner: tuple[InstrumentedAttribute[Any], ...]
    lead: tuple[InstrumentedAttribute[Any], ...] = ()


@dataclass(frozen=True, slots=True)
class _Plan:
    branches: list[_Branch]
    prefix_desc: bool
    prefix_of: Callable[[Row[Any]], tuple[int, ...]]
    inner_of: Callable[[Row[Any]], tuple[Any, ...]]
    # The column ordering rows after the prefix in every branch (NULL where a branch
    # orders by id alone: its prefix sets it apart).
    key: InstrumentedAttribute[Any]
    splits_status: bool = False


def _plan(filters: TicketFilter, sort: SortField, direction: Direction) -> _Plan:
    desc = direction == "desc"
    statuses = filters.statuses or ()
    if sort == "priority":
        wanted = filters.priorities or tuple(Priority)
        branches = [
            _Branch(
                (Ticket.priority == p.value,), (PRIORITY_RANK[p],), (Ticket.created_at, Ticket.id)
            )
            for p in wanted
        ]
        return _Plan(
            branches,
            desc,
            lambda r: (PRIORITY_RANK[Priority(r.priority)],),
            lambda r: (r.created_at, r.id),
            Ticket.created_at,
        )
    if sort == "due_date":
        # Tickets without a due date come last in both directions. With a status filter,
        # one pair of branches per status ranges over (status, due_date, id).
        per_status: list[tuple[ColumnElement[bool], ...]] = [
            (Ticket.status == st.value,) for st in statuses
        ] or [()]
        branches = []
        for cond in per_status:
            branches += [
                _Branch((*cond, Ticket.due_date.is_not(None)), (0,), (Ticket.due_date, Ticket.id)),
                _Branch((*cond, Ticket.due_date.is_(None)), (1,), (Ticket.id,), (Ticket.due_date,)),
            ]
        return _Plan(
            branches,
            False,
            lambda r: (0,) if r.due_date is not None else (1,),
            lambda r: (r.due_date, r.id) if r.due_date is not None else (r.id,),
            Ticket.due_date,
            splits_status=bool(statuses),
        )
    column = Ticket.created_at if sort == "created_at" else Ticket.updated_at
    inner = (column, Ticket.id)
    split: tuple[ColumnElement[bool], ...] = ()
    lead: tuple[InstrumentedAttribute[Any], ...] = ()
    by_status = False
    if sort == "created_at":
        wants_status_index = (
            filters.assignee_id is not None or filters.unassigned or filters.escalated is not None
        )
        if filters.unassigned:
            lead = (Ticket.assignee_id,)
        if len(statuses) > 1 or (wants_status_index and not statuses):
            by_status = True
            # One index range per status: (status, created_at, id) or, for an assignee
            # (or none) or the escalated flag, (assignee_id | escalated, status, created_at).
            split = tuple(Ticket.status == s.value for s in (statuses or tuple(TicketStatus)))
        elif len(filters.priorities) > 1:
            split = tuple(Ticket.priority == p.value for p in filters.priorities)
    name = column.key

    def inner_of(row: Row[Any]) -> tuple[Any, ...]:
        return (getattr(row, name), row.id)

    branches = [_Branch((cond,), (), inner, lead) for cond in split] or [
        _Branch((), (), inner, lead)
    ]
    return _Plan(branches, False, lambda r: (), inner_of, column, splits_status=by_status)


# --- cursors ---------------------------------------------------------------------------


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.astimezone(UTC).isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": value.hex}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        return datetime.fromisoformat(value["t"])
    if isinstance(value, dict) and set(value) == {"u"}:
        return uuid.UUID(hex=value["u"])
    raise ValueError("bad cursor value")


def encode_cursor(
    sort: str, direction: str, prefix: tuple[int, ...], inner: tuple[Any, ...]
) -> str:
    """An opaque position after the row whose sort key is (prefix, inner)."""
    payload = {"s": sort, "d": direction, "p": list(prefix), "v": [_encode_value(v) for v in inner]}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class _Cursor:
    prefix: tuple[int, ...]
    inner: tuple[Any, ...]


def decode_cursor(cursor: str, sort: str, direction: str) -> _Cursor:
    """The position a cursor names; 422 when it is not one of ours or another sort's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if payload["s"] != sort or payload["d"] != direction:
            raise ValueError("cursor of another ordering")
        prefix = tuple(int(p) for p in payload["p"])
        inner = tuple(_decode_value(v) for v in payload["v"])
        if not inner or not isinstance(inner[-1], uuid.UUID):
            raise ValueError("cursor without an id")
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            "cursor is not valid for this ordering", details={"field": "cursor"}
        ) from exc
    return _Cursor(prefix, inner)


def _after(
    columns: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any], desc: bool
) -> ColumnElement[bool]:
    """Rows strictly after `values` in (columns...) order, written so that the leading
    column is an index range (row-value comparisons are not planned alike everywhere)."""
    head, rest = columns[0], columns[1:]
    value = values[0]
    if not rest:
        return head < value if desc else head > value
    beyond = head < value if desc else head > value
    within = head <= value if desc else head >= value
    return and_(within, or_(beyond, and_(head == value, _after(rest, values[1:], desc))))


def _cursor_condition(
    branch: _Branch, cursor: _Cursor, prefix_desc: bool, desc: bool
) -> ColumnElement[bool] | Literal[False] | None:
    """Extra condition of a branch after the cursor: None (all rows), False (none)."""
    if branch.prefix != cursor.prefix:
        later = branch.prefix < cursor.prefix if prefix_desc else branch.prefix > cursor.prefix
        return None if later else False
    if len(cursor.inner) != len(branch.inner):
        raise ValidationFailed("cursor is not valid for this ordering", details={"field": "cursor"})
    return _after(branch.inner, cursor.inner, desc)


# --- filters ---------------------------------------------------------------------------


def _conditions(
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
        from helpdesk.services.sla import sla_condition

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
class _Membership:
    """A ticket must have this tag or this search token (rows of a side table)."""

    ticket_id: InstrumentedAttribute[uuid.UUID]
    value_column: InstrumentedAttribute[str]
    value: str

    def rows(self) -> Select[uuid.UUID]:
        return select(self.ticket_id).where(self.value_column == self.value)

    def holds(self) -> ColumnElement[bool]:
        """Probed per candidate ticket (cheap while matches are dense)."""
        return exists().where(self.ticket_id == Ticket.id, self.value_column == self.value)

    def drives(self, also: Sequence[_Membership] = ()) -> ColumnElement[bool]:
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


def _memberships(runtime: Runtime, filters: TicketFilter) -> list[_Membership]:
    found = [
        _Membership(TicketTag.ticket_id, TicketTag.token, token)
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
            _Membership(TicketSearchToken.ticket_id, TicketSearchToken.token, token)
            for token in tokens
        ]
    return found


async def _probe(session: AsyncSession, memberships: list[_Membership], cap: int) -> list[int]:
    """How many tickets carry each tag/token, counted up to `cap` + 1 (index only)."""
    counts = [
        select(func.count()).select_from(m.rows().limit(cap + 1).subquery()).scalar_subquery()
        for m in memberships
    ]
    row = (await session.execute(select(*counts))).one()
    return [int(value) for value in row]


# --- keyword search in list order ------------------------------------------------------


def _walks_tokens(viewer: Caller, filters: TicketFilter, sort: SortField) -> bool:
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
class _TokenWalk:
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
            candidates = self.rows().order_by(*self.order(desc)).limit(SEARCH_WINDOW).subquery()
        matches = (
            select(Ticket.id)
            .select_from(candidates)
            .join(Ticket, Ticket.id == candidates.c.ticket_id)
            .where(*self.others_hold(candidates.c), *base)
            .limit(COUNT_CAP + 1)
            .subquery()
        )
        return select(func.count()).select_from(matches).scalar_subquery()

    def scanned(self) -> ScalarSelect[int]:
        """The driving word's rows, counted up to SEARCH_WINDOW + 1 (index only)."""
        rows = self.rows().limit(SEARCH_WINDOW + 1).subquery()
        return select(func.count()).select_from(rows).scalar_subquery()


async def _token_walk(
    session: AsyncSession, memberships: list[_Membership], filters: TicketFilter, desc: bool
) -> _TokenWalk:
    """The walk driven by the word whose range yields matches soonest: one with at most
    SEARCH_WINDOW rows (the walk is that short), else the rarest among the first
    SEARCH_SAMPLE tickets of the list (where the walk starts). One word needs no probe;
    several, one statement of index-only counts (a few thousand index entries at most)."""
    tokens = [m.value for m in memberships]
    if len(tokens) > 1:
        edge = (
            select(Ticket.created_at)
            .order_by(Ticket.created_at.desc() if desc else Ticket.created_at.asc())
            .offset(SEARCH_SAMPLE)
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
                .select_from(rows.limit(SEARCH_WINDOW + 1).subquery())
                .scalar_subquery(),
                select(func.count()).select_from(first.subquery()).scalar_subquery(),
            ]
        counts = list((await session.execute(select(*probes))).one())
        rank = {t: (counts[2 * i], counts[2 * i + 1]) for i, t in enumerate(tokens)}
        tokens.sort(key=rank.__getitem__)
    sqlite = session.bind is not None and session.bind.dialect.name == "sqlite"
    return _TokenWalk(
        tokens[0], tuple(tokens[1:]), filters.created_from, filters.created_to, sqlite
    )


# --- the list --------------------------------------------------------------------------


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
    if page.page_size < 1 or page.page_size > runtime.settings.max_page_size:
        raise ValidationFailed(
            f"page_size must be between 1 and {runtime.settings.max_page_size}",
            details={"field": "page_size"},
        )
    offset = (page.page - 1) * page.page_size
    if page.cursor is not None and page.page != 1:
        raise ValidationFailed("give either page or cursor", details={"field": "cursor"})
    if offset > MAX_OFFSET:
        raise ValidationFailed(
            f"pages deeper than {MAX_OFFSET} rows need the cursor of the previous page",
            details={"field": "page"},
        )
    desc = page.direction == "desc"
    plan = _plan(filters, page.sort, page.direction)
    base = _conditions(runtime, viewer, filters, split_statuses=plan.splits_status)
    cursor = decode_cursor(page.cursor, page.sort, page.direction) if page.cursor else None
    limit = (0 if cursor else offset) + page.page_size + 1

    # (PostgreSQL: the engine turns JIT and parallel workers off for every connection,
    # see helpdesk.db: they take longer to start than these LIMITed scans take to finish.)
    memberships = _memberships(runtime, filters)
    walk: _TokenWalk | None = None
    drive: _Membership | None = None
    counting = True
    if memberships and _walks_tokens(viewer, filters, page.sort):
        walk = await _token_walk(session, memberships, filters, desc)
    elif memberships and is_staff(viewer.role):
        # (An end user's own tickets are few: their requester index bounds every probe.)
        cap = DRIVE_CAP if len(memberships) == 1 else INTERSECT_CAP
        counts = await _probe(session, memberships, cap)
        rarest = min(range(len(counts)), key=counts.__getitem__)
        if counts[rarest] == 0:
            return _empty(page)
        if counts[rarest] <= cap:
            drive = memberships[rarest]
        else:
            # Every tag/word is common: pages fill fast, but an exact count would check
            # each candidate ticket; report what is known instead (flagged as an estimate).
            counting = False
    if drive is not None:
        others = [m for m in memberships if m is not drive]
        base.append(drive.drives(others))
    elif walk is None:
        base += [m.holds() for m in memberships]

    parts: list[Select[Any]] = []
    if walk is not None:
        # The cursor is the (created_at, id) of a ticket: its tokens carry the same values.
        branch = _Branch((), (), (TicketSearchToken.ticket_created_at, TicketSearchToken.ticket_id))
        extra = _cursor_condition(branch, cursor, plan.prefix_desc, desc) if cursor else None
        if extra is not False:
            parts.append(walk.page(base, extra, desc).limit(limit))
        count_query = walk.count(base, desc)
        scanned_query = walk.scanned() if walk.others else None
    else:
        count_query = _count_query(base, filters, plan.splits_status)
        scanned_query = None
        for branch in plan.branches:
            where = [*base, *branch.where]
            if cursor is not None:
                cond = _cursor_condition(branch, cursor, plan.prefix_desc, desc)
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

    count_column = count_query if counting else cast(null(), Integer)
    scanned_column = scanned_query if scanned_query is not None else cast(null(), Integer)
    rows: list[Row[Any]] = []
    if parts:
        # Choose the page by id and sort key alone, then read the few chosen rows (a sort
        # over candidates never drags their ciphertext and tags along). The capped count,
        # each row's tags and its wrapped data key ride along: one round trip, not four.
        # (Materialised: SQLite would otherwise copy the outer query, count included,
        # into every branch of the union.)
        # Several branches are merged there too, so that only the page's rows come back
        # (reading a row costs more in Python, 15-35 us, than in the database).
        chosen = (
            (parts[0] if len(parts) == 1 else _merged(parts, plan, desc, limit))
            .cte("page_ids")
            .prefix_with("MATERIALIZED")
        )
        statement: Select[*tuple[Any, ...]] = (
            select(
                *_COLUMNS,
                _TAGS.label("tags"),
                DataKeyRow.kek_id,
                DataKeyRow.wrapped_key,
                count_column.label("total"),
                scanned_column.label("scanned"),
            )
            .join(chosen, Ticket.id == chosen.c.id)
            .outerjoin(DataKeyRow, DataKeyRow.id == Ticket.data_key_id)
        )
        rows = list((await session.execute(statement)).all())

    ordered = _merge(rows, plan, desc)
    window = ordered[offset if cursor is None else 0 :]
    has_more = len(window) > page.page_size
    window = window[: page.page_size]

    proven = (0 if cursor else offset) + len(window) + int(has_more)
    if counting:
        if rows:
            counted, scanned = int(rows[0].total), rows[0].scanned
        else:  # no row came back (an empty page): count on its own
            counted, scanned = (await session.execute(select(count_column, scanned_column))).one()
        if counted > COUNT_CAP:
            total, estimate = COUNT_CAP, True
        elif scanned is not None and scanned > SEARCH_WINDOW:
            # Counted in the newest part of the driving word's rows only: "at least".
            total, estimate = max(counted, proven), True
        else:
            total, estimate = counted, False
    else:
        total, estimate = proven, True
    items = await _items(runtime, window)
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


def _merged(parts: list[Select[Any]], plan: _Plan, desc: bool, limit: int) -> Select[Any]:
    """The first `limit` rows of the branches together, in list order."""
    union = union_all(*(select(p.subquery()) for p in parts)).subquery()
    keys = [c for c in union.c if c.key.startswith("p")]
    order = [c.desc() if plan.prefix_desc else c.asc() for c in keys]
    order += [c.desc() if desc else c.asc() for c in (union.c.k, union.c.id)]
    return select(union.c.id).order_by(*order).limit(limit)


def _merge(rows: list[Row[Any]], plan: _Plan, desc: bool) -> list[Row[Any]]:
    """Order the union of the branches: by prefix group, then inside each group."""
    groups: dict[tuple[int, ...], list[Row[Any]]] = {}
    for row in rows:
        groups.setdefault(plan.prefix_of(row), []).append(row)
    ordered: list[Row[Any]] = []
    for prefix in sorted(groups, reverse=plan.prefix_desc):
        ordered.extend(sorted(groups[prefix], key=plan.inner_of, reverse=desc))
    return ordered


def _count_query(
    base: list[ColumnElement[bool]], filters: TicketFilter, split_statuses: bool
) -> ScalarSelect[int]:
    """How many tickets match, counted up to COUNT_CAP + 1 (beyond: an estimate)."""
    conds = list(base)
    if split_statuses and filters.statuses:
        conds.append(Ticket.status.in_([s.value for s in filters.statuses]))
    capped = select(Ticket.id).where(*conds).limit(COUNT_CAP + 1).subquery()
    return select(func.count()).select_from(capped).scalar_subquery()


async def _items(runtime: Runtime, rows: list[Row[Any]]) -> list[TicketListItem]:
    # The page's data keys came with its rows (outer-joined: a disposed key leaves the
    # title empty); each is unwrapped once (concurrently when the KEK is in Key Vault).
    keys: dict[uuid.UUID, DataKey] = await runtime.keys.keyring.unwrap_many_async(
        WrappedKey(row.data_key_id, row.kek_id, row.wrapped_key)
        for row in rows
        if row.data_key_id is not None and row.kek_id is not None
    )
    return [
        TicketListItem(
            id=row.id,
            number=row.number,
            title=_title(keys, row),
            status=row.status,
            priority=row.priority,
            category_id=row.category_id,
            assignee_id=row.assignee_id,
            requester_id=row.requester_id,
            tags=_tags(keys, row),
            escalated=bool(row.escalated),
            escalation_level=row.escalation_level,
            escalated_at=row.escalated_at,
            escalated_to=row.escalated_to,
            due_date=row.due_date,
            created_at=row.created_at,
            updated_at=row.updated_at,
            resolved_at=row.resolved_at,
            closed_at=row.closed_at,
        )
        for row in rows
    ]


def _tags(keys: dict[uuid.UUID, DataKey], row: Row[Any]) -> list[str]:
    key = keys.get(row.data_key_id) if row.data_key_id else None
    return ticket_tags.unpack(key, row.id, row.tags)


def _title(keys: dict[uuid.UUID, DataKey], row: Row[Any]) -> str | None:
    key = keys.get(row.data_key_id) if row.data_key_id else None
    if key is None:
        return None
    try:
        return ticket_text.open_(key, row.id, "title", row.title_enc)
    except DataIntegrityError as exc:
        raise DataIntegrityError(
            "stored ticket text failed its integrity check",
            audit={
                "action": "ticket.integrity_error",
                "outcome": "failure",
                "table": "tickets",
                "record_id": row.id,
                "details": {"column": "title"},
            },
        ) from exc
