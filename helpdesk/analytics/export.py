"""The de-identified ticket export (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)), streamed.

By construction, a row is built only from the fact row (enumerations, timestamps, counts),
the ticket's requester id and its tag tokens, never from a text column:
- ticket, requester and agent ids become keyed pseudonyms: HMAC-SHA256 under a random
  per-export salt (two exports cannot be joined), or under a key derived from the blind
  index key when an administrator asks for stable pseudonyms;
- dates are cut to the day, durations kept in seconds;
- a category id and tags appear only when on the administrators' allow-lists (settings);
- every CSV cell that a spreadsheet would run as a formula is escaped.
Tickets are read a batch at a time (keyset on created_at, id): memory stays constant.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, tuple_

from helpdesk.analytics.queries import Scope, fact_filter
from helpdesk.runtime import Runtime
from helpdesk.services.ticket_tags import tag_token
from models.analytics import TicketFact
from models.ticket import Ticket, TicketTag

ExportFormat = Literal["csv", "jsonl"]
BATCH = 1000
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
    """Keyed pseudonyms of ids: HMAC(key, kind:id), 20 hex digits."""

    def __init__(self, key: bytes) -> None:
        self._key = key

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
        return hmac.digest(self._key, kind.encode() + value.bytes, "sha256").hex()[:20]


def _day(at: datetime | None) -> str:
    return "" if at is None else at.date().isoformat()


def _seconds(start: datetime, end: datetime | None) -> int | None:
    return None if end is None else max(0, int((end - start).total_seconds()))


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


def row_of(
    fact: Any,
    requester_id: uuid.UUID,
    tags: Sequence[str],
    names: Pseudonyms,
    categories: frozenset[str],
) -> dict[str, Any]:
    category = str(fact.category_id) if fact.category_id is not None else ""
    return {
        "ticket": names.of("ticket", fact.ticket_id),
        "requester": names.of("user", requester_id),
        "agent": names.of("user", fact.assignee_id),
        "created_date": _day(fact.created_at),
        "status": fact.status,
        "priority": fact.priority,
        "category": category if category in categories else "",
        "tags": ";".join(sorted(tags)),
        "first_response_seconds": _seconds(fact.created_at, fact.first_response_at),
        "resolution_seconds": _seconds(fact.created_at, fact.resolved_at),
        "resolved_date": _day(fact.resolved_at),
        "reopen_count": fact.reopen_count,
        "staff_replies": fact.staff_replies,
        "escalation_level": fact.escalation_level,
        "first_response_breached": fact.first_response_breached_at is not None,
        "resolution_breached": fact.resolution_breached_at is not None,
    }


def encode(rows: Sequence[dict[str, Any]], fmt: ExportFormat, header: bool) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    for r in rows:
        # Only the allow-listed text columns can hold what a spreadsheet would run;
        # the others are hex pseudonyms, enumerations, dates and numbers.
        writer.writerow(
            [
                safe_cell(r[c]) if c in _TEXT_COLUMNS else ("" if r[c] is None else r[c])
                for c in COLUMNS
            ]
        )
    return out.getvalue().encode()


async def stream(runtime: Runtime, request: ExportRequest) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of export rows of the tickets created in the scope's period, oldest first."""
    settings = runtime.settings
    allowed_tags = {tag_token(runtime.blind_index, t): t for t in settings.analytics_export_tags}
    categories = frozenset(settings.analytics_export_categories)
    scope = request.scope
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        query = (
            select(*TicketFact.__table__.columns, Ticket.requester_id)
            .join(Ticket, Ticket.id == TicketFact.ticket_id)
            .where(
                TicketFact.created_at >= scope.start,
                TicketFact.created_at < scope.end,
                Ticket.deleted_at.is_(None),
                *fact_filter(scope),
            )
            .order_by(TicketFact.created_at, TicketFact.ticket_id)
            .limit(BATCH)
        )
        if after is not None:
            query = query.where(tuple_(TicketFact.created_at, TicketFact.ticket_id) > after)
        async with runtime.database.read() as session:
            found = (await session.execute(query)).all()
            tags: dict[uuid.UUID, list[str]] = {}
            if found and allowed_tags:
                rows = await session.execute(
                    select(TicketTag.ticket_id, TicketTag.token).where(
                        TicketTag.ticket_id.in_([f.ticket_id for f in found]),
                        TicketTag.token.in_(list(allowed_tags)),
                    )
                )
                for ticket_id, token in rows.all():
                    tags.setdefault(ticket_id, []).append(allowed_tags[token])
        if not found:
            return
        last = found[-1]
        after = (last.created_at, last.ticket_id)
        yield [
            row_of(
                fact,
                fact.requester_id,
                tags.get(fact.ticket_id, ()),
                request.pseudonyms,
                categories,
            )
            for fact in found
        ]
        if len(found) < BATCH:
            return
