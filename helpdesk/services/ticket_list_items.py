"""The rows of a ticket list page as the caller sees them: the columns read (never the
description), and titles and tags opened with the page's data keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select

from helpdesk.crypto import DataKey, WrappedKey
from helpdesk.errors import DataIntegrityError
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_tags, ticket_text
from models.ticket import Ticket, TicketTag

# Only these columns are read: never the description, never more than a page needs.
COLUMNS = (
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
TAGS = (
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


async def list_items(runtime: Runtime, rows: list[Row[Any]]) -> list[TicketListItem]:
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
