"""The de-identified ticket export (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)), streamed.

By construction, a ticket row is built only from the fact row (enumerations, timestamps,
counts), the ticket's requester id and its tag tokens, and an event row (`rows="event"`)
only from a history entry's action, day, actor and the names and enumeration values of what
it changed; never from a text column or a sealed value:
- ticket, requester and agent ids become keyed pseudonyms: HMAC-SHA256 under a random
  per-export salt (two exports cannot be joined), or under a key derived from the blind
  index key when an administrator asks for stable pseudonyms;
- dates are cut to the day, durations kept in seconds;
- a category id and tags appear only when on the administrators' allow-lists (settings);
- every CSV cell that a spreadsheet would run as a formula is escaped.
Tickets are read a batch at a time (keyset on created_at, id): memory stays constant.

Speed (the issue's goal is 20,000 rows/s): the database cuts dates to the day and computes
durations in whole seconds (exactly as Python's int(timedelta.total_seconds()) would), rows
come back as the driver's raw tuples (no ORM objects, no per-row type processing), a user's
pseudonym is computed once per export, and a batch is encoded by one csv writer call.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from helpdesk.analytics.queries import Scope, fact_filter
from helpdesk.runtime import Runtime
from helpdesk.services.ticket_tags import tag_token
from models.analytics import TicketFact
from models.enums import Priority, TicketStatus
from models.ticket import Ticket, TicketHistory, TicketTag

ExportFormat = Literal["csv", "jsonl"]
ExportRows = Literal["ticket", "event"]
BATCH = 5000
COLUMNS = (
    "ticket",
    "requester",
    "agent",
    "created_date",
    "status",
    "priority",
    "category",
    "tags",
    "first_response_seconds",
    "resolution_seconds",
    "resolved_date",
    "reopen_count",
    "staff_replies",
    "escalation_level",
    "first_response_breached",
    "resolution_breached",
)
_TEXT_COLUMNS = frozenset({"category", "tags"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Pseudonyms:
    """Keyed pseudonyms of ids: HMAC(key, kind:id), 20 hex digits. A user's pseudonym is
    remembered for the rest of the export (agents and frequent requesters recur), up to
    `CACHE` users: the memory stays bounded."""

    CACHE = 50_000

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._users: dict[bytes, str] = {}

    @classmethod
    def per_export(cls) -> Pseudonyms:
        return cls(secrets.token_bytes(32))

    @classmethod
    def stable(cls, runtime: Runtime) -> Pseudonyms:
        base = runtime.settings.secret_bytes("blind_index_key")
        return cls(hmac.new(base, b"analytics-export-pseudonyms", hashlib.sha256).digest())

    def of(self, kind: str, value: uuid.UUID | None) -> str:
        if value is None:
            return ""
        return self.of_bytes(kind.encode(), value.bytes)

    def of_bytes(self, kind: bytes, value: bytes) -> str:
        return hmac.digest(self._key, kind + value, "sha256").hex()[:20]

    def user(self, value: bytes | None) -> str:
        """The pseudonym of a user id (its 16 bytes), remembered."""
        if value is None:
            return ""
        found = self._users.get(value)
        if found is None:
            if len(self._users) >= self.CACHE:
                self._users.clear()
            found = self._users[value] = self.of_bytes(b"user", value)
        return found


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@dataclass(frozen=True, slots=True)
class ExportRequest:
    scope: Scope
    format: ExportFormat
    pseudonyms: Pseudonyms
    rows: ExportRows = "ticket"


Row = tuple[Any, ...]  # the values of COLUMNS, in order
_TAGS = COLUMNS.index("tags")
_CATEGORY = COLUMNS.index("category")


def encode(
    rows: Sequence[Row], fmt: ExportFormat, header: bool, kind: ExportRows = "ticket"
) -> bytes:
    columns = COLUMNS if kind == "ticket" else EVENT_COLUMNS
    if fmt == "jsonl":
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        return "".join([dumps(dict(zip(columns, r, strict=True))) + "\n" for r in rows]).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(columns)
    if kind == "event":
        # Every text cell is a pseudonym, a day, an enumeration, a code name or an
        # allow-listed id; escaped all the same.
        writer.writerows(tuple(safe_cell(v) for v in r) for r in rows)
        return out.getvalue().encode()
    # Only the allow-listed text columns can hold what a spreadsheet would run; the others
    # are hex pseudonyms, enumerations, dates and numbers. None is written as an empty cell.
    writer.writerows(
        r
        if not (r[_TAGS].startswith(_FORMULA_START) or r[_CATEGORY].startswith(_FORMULA_START))
        else tuple(safe_cell(v) if i in (_TAGS, _CATEGORY) else v for i, v in enumerate(r))
        for r in rows
    )
    return out.getvalue().encode()


class _Dialect:
    """SQL that cuts a timestamp to its UTC day and takes whole seconds between two, and the
    bytes of a raw id, as each database gives them."""

    def __init__(self, name: str) -> None:
        self.postgres = name == "postgresql"

    def day(self, column: str) -> ColumnElement[Any]:
        if self.postgres:
            return literal_column(f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
        return literal_column(f"substr({column}, 1, 10)")

    def seconds(self, start: str, end: str) -> ColumnElement[Any]:
        """Whole seconds from start to end, truncated, at least 0; NULL without an end."""
        if self.postgres:
            return literal_column(
                f"CASE WHEN {end} IS NULL THEN NULL ELSE "
                f"GREATEST(0, trunc(EXTRACT(EPOCH FROM ({end} - {start}))))::bigint END"
            )
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): integer arithmetic in microseconds.
        micros = (
            f"((CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"
            f" * 1000000 + CAST(substr({end}, 21, 6) AS INTEGER)"
            f" - CAST(substr({start}, 21, 6) AS INTEGER))"
        )
        return literal_column(
            f"CASE WHEN {end} IS NULL THEN NULL ELSE max(0, {micros} / 1000000) END"
        )

    def after(self) -> Any:
        """The keyset condition: after the last row of the previous batch."""
        if self.postgres:
            return text(
                "(ticket_facts.created_at, ticket_facts.ticket_id)"
                " > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))"
            )
        return text("(ticket_facts.created_at, ticket_facts.ticket_id) > (:after_at, :after_id)")

    def raw_id(self, value: uuid.UUID) -> Any:
        """An id as a raw row holds it (to match allow-listed ids without converting rows)."""
        return str(value) if self.postgres else value.hex

    def key(self, raw: Any) -> Any:
        return str(raw) if self.postgres else raw

    def id_bytes(self, raw: Any) -> bytes:
        return bytes(raw.bytes) if self.postgres else bytes.fromhex(raw)


def _column(name: str) -> ColumnElement[Any]:
    return literal_column(f"ticket_facts.{name}")


def _ticket_query(d: _Dialect, scope: Scope, columns: Sequence[Any], batch: int) -> Any:
    """A batch of the scope's tickets (created in its period, not deleted, within its
    filter), oldest first; the last two columns are the keyset (created_at, ticket_id)."""
    return (
        select(*columns, _column("created_at"), _column("ticket_id"))
        .select_from(TicketFact)
        .join(Ticket, Ticket.id == TicketFact.ticket_id)
        .where(
            TicketFact.created_at >= scope.start,
            TicketFact.created_at < scope.end,
            Ticket.deleted_at.is_(None),
            *fact_filter(scope),
        )
        .order_by(TicketFact.created_at, TicketFact.ticket_id)
        .limit(batch)
    )


async def _batches(
    runtime: Runtime, scope: Scope, columns: Any, batch: int, then: Any = None
) -> AsyncIterator[tuple[_Dialect, list[Any], Any]]:
    """The scope's tickets a batch at a time (keyset pagination, a short read transaction
    per batch): `columns(dialect)` are selected; `then(session, dialect, rows)` reads what
    the batch needs besides, in the same transaction."""
    after: dict[str, Any] | None = None
    d: _Dialect | None = None
    while True:
        async with runtime.database.read() as session:
            if d is None:
                d = _Dialect(session.get_bind().dialect.name)
            query = _ticket_query(d, scope, columns(d), batch)
            if after is not None:
                query = query.where(d.after()).params(**after)
            found = list((await session.execute(query)).all())
            extra = await then(session, d, found) if then is not None and found else None
        if not found:
            return
        yield d, found, extra
        if len(found) < batch:
            return
        last = found[-1]
        after = {"after_at": last[-2], "after_id": last[-1]}


def _categories(d: _Dialect, allowed: Sequence[str]) -> dict[Any, str]:
    """Allow-listed category ids, keyed as a raw row holds them."""
    out: dict[Any, str] = {}
    for c in allowed:
        with contextlib.suppress(ValueError):
            out[d.key(d.raw_id(uuid.UUID(str(c))))] = c
    return out


async def stream(runtime: Runtime, request: ExportRequest) -> AsyncIterator[list[Row]]:
    """Batches of export rows of the tickets created in the scope's period, oldest first
    (one row per ticket, or per event of those tickets: `request.rows`)."""
    if request.rows == "event":
        async for events in _event_rows(runtime, request):
            yield events
        return
    settings = runtime.settings
    allowed_tags = {tag_token(runtime.blind_index, t): t for t in settings.analytics_export_tags}
    names = request.pseudonyms
    ticket_kind = b"ticket"
    categories: dict[Any, str] | None = None

    def columns(d: _Dialect) -> list[Any]:
        f = "ticket_facts."
        return [
            literal_column("tickets.requester_id"),
            _column("assignee_id"),
            d.day(f + "created_at"),
            _column("status"),
            _column("priority"),
            _column("category_id"),
            d.seconds(f + "created_at", f + "first_response_at"),
            d.seconds(f + "created_at", f + "resolved_at"),
            d.day(f + "resolved_at"),
            _column("reopen_count"),
            _column("staff_replies"),
            _column("escalation_level"),
            literal_column(f"{f}first_response_breached_at IS NOT NULL"),
            literal_column(f"{f}resolution_breached_at IS NOT NULL"),
        ]

    async def tags_of(session: AsyncSession, d: _Dialect, found: list[Any]) -> Any:
        tags: dict[Any, list[str]] = {}
        if allowed_tags:
            tagged: Any = await session.execute(
                select(literal_column("ticket_tags.ticket_id"), TicketTag.token).where(
                    TicketTag.ticket_id.in_([uuid.UUID(bytes=d.id_bytes(r[-1])) for r in found]),
                    TicketTag.token.in_(list(allowed_tags)),
                )
            )
            for ticket_id, token in tagged.all():
                tags.setdefault(d.key(ticket_id), []).append(allowed_tags[token])
        return tags

    async for d, found, tags in _batches(runtime, request.scope, columns, BATCH, tags_of):
        if categories is None:
            categories = _categories(d, settings.analytics_export_categories)
        id_bytes, key = d.id_bytes, d.key
        user = names.user
        batch: list[Row] = []
        for (
            requester, agent, created, status, priority, category, fr, res, resolved,
            reopens, replies, level, fr_breached, res_breached, _, ticket,
        ) in found:  # fmt: skip
            found_tags = tags.get(key(ticket)) if tags else None
            batch.append(
                (
                    names.of_bytes(ticket_kind, id_bytes(ticket)),
                    user(id_bytes(requester)),
                    user(None if agent is None else id_bytes(agent)),
                    created,
                    status,
                    priority,
                    categories.get(key(category), "") if categories and category else "",
                    ";".join(sorted(found_tags)) if found_tags else "",
                    fr,
                    res,
                    resolved or "",
                    reopens,
                    replies,
                    level,
                    bool(fr_breached),
                    bool(res_breached),
                )
            )
        yield batch


# --- one row per event ----------------------------------------------------------------

EVENT_COLUMNS = (
    "ticket",
    "event_date",
    "action",
    "actor",
    "fields",
    "status_from",
    "status_to",
    "priority_from",
    "priority_to",
    "agent",
    "category",
    "escalation_level",
)
EVENT_BATCH = 1000  # tickets per batch (each with its history)
# Actions and field names are the code's vocabulary; anything else is not shown.
_NAME = re.compile(r"[a-z][a-z0-9_.]{0,39}")
_STATUSES = frozenset(s.value for s in TicketStatus)
_PRIORITIES = frozenset(p.value for p in Priority)


def _enum_change(change: Any, allowed: frozenset[str]) -> tuple[str, str]:
    """(old, new) of an enumeration's change, each only when a known value."""
    if not isinstance(change, dict):
        return "", ""
    old, new = change.get("old"), change.get("new")
    return (old if old in allowed else "", new if new in allowed else "")


def _uuid_bytes(value: Any) -> bytes | None:
    try:
        return uuid.UUID(str(value)).bytes
    except ValueError:
        return None


def event_row(
    ticket: str,
    day: str,
    action: str,
    actor: str,
    changes: Any,
    names: Pseudonyms,
    categories: frozenset[str],
) -> Row:
    """A history entry, de-identified: the action and the names of the fields it changed
    (never a value of a text field: titles, descriptions, notes and tags show as names
    only), statuses and priorities (enumerations), the new assignee's pseudonym, the new
    category when allow-listed, the new escalation level."""
    changes = changes if isinstance(changes, dict) else {}
    fields = ";".join(sorted(k for k in changes if isinstance(k, str) and _NAME.fullmatch(k)))
    status_from, status_to = _enum_change(changes.get("status"), _STATUSES)
    priority_from, priority_to = _enum_change(changes.get("priority"), _PRIORITIES)
    agent = ""
    assignee = changes.get("assignee_id")
    if isinstance(assignee, dict) and assignee.get("new"):
        agent = names.user(_uuid_bytes(assignee["new"]))
    category = ""
    moved = changes.get("category_id")
    if isinstance(moved, dict) and moved.get("new") in categories:
        category = str(moved["new"])
    level: int | None = None
    escalation = changes.get("escalation_level")
    raw_level = escalation.get("new") if isinstance(escalation, dict) else escalation
    if isinstance(raw_level, int) and not isinstance(raw_level, bool):
        level = raw_level
    return (
        ticket,
        day,
        action if _NAME.fullmatch(action or "") else "other",
        actor,
        fields,
        status_from,
        status_to,
        priority_from,
        priority_to,
        agent,
        category,
        level,
    )


async def _event_rows(runtime: Runtime, request: ExportRequest) -> AsyncIterator[list[Row]]:
    names = request.pseudonyms
    categories = frozenset(str(c) for c in runtime.settings.analytics_export_categories)
    history = TicketHistory.__table__.c

    async def events_of(session: AsyncSession, d: _Dialect, found: list[Any]) -> Any:
        ids = [uuid.UUID(bytes=d.id_bytes(r[-1])) for r in found]
        rows = await session.execute(
            select(
                literal_column("ticket_history.ticket_id"),
                d.day("ticket_history.at"),
                history.action,
                literal_column("ticket_history.actor_id"),
                history.changes,
            )
            .where(history.ticket_id.in_(ids))
            .order_by(history.ticket_id, history.at, history.id)
        )
        by_ticket: dict[Any, list[Any]] = {}
        for row in rows.all():
            by_ticket.setdefault(d.key(row[0]), []).append(row)
        return by_ticket

    async for d, found, by_ticket in _batches(
        runtime, request.scope, lambda d: [], EVENT_BATCH, events_of
    ):
        out: list[Row] = []
        for _, ticket in found:
            events = by_ticket.get(d.key(ticket), ())
            if not events:
                continue
            pseudonym = names.of_bytes(b"ticket", d.id_bytes(ticket))
            for _, day, action, actor, changes in events:
                actor_name = names.user(None if actor is None else d.id_bytes(actor))
                out.append(
                    event_row(pseudonym, day, action, actor_name, changes, names, categories)
                )
        yield out
