"""Ticket reads: the one object check (`load_visible`, which audits a refusal), the
ticket view a caller may see, and its history."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import errors
from helpdesk.policy import can_see_escalation_target, history_entry_visible, is_staff
from helpdesk.rules.contracts import (
    TicketState,
)
from helpdesk.runtime import Runtime
from helpdesk.services import attachments, ticket_tags, ticket_text
from helpdesk.services.ticket_history import open_note
from helpdesk.services.tickets import TABLE
from models.ticket import Ticket, TicketHistory

log = logging.getLogger("helpdesk.tickets")

# --- reads -----------------------------------------------------------------------------


async def load_visible(
    session: AsyncSession, caller_id: uuid.UUID, caller_role: str, ticket_id: uuid.UUID
) -> Ticket:
    """The ticket if the caller may see it: 404 for a missing ticket or someone else's (an
    end user learns nothing about tickets not theirs), 410 once it was deleted.

    The one object check of every ticket route (read, history, edit, status, assign,
    escalate, delete): each refusal carries its `access.denied` audit row, written by the
    API's error handler in a transaction of its own (the caller's rolls back)."""
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None or not (is_staff(caller_role) or ticket.requester_id == caller_id):
        why = "missing" if ticket is None else "not_visible"
        raise errors.NotFound("ticket not found", audit=_refusal(ticket_id, why))
    if ticket.deleted_at is not None:
        raise errors.Gone("this ticket was deleted", audit=_refusal(ticket_id, "deleted"))
    return ticket


def _refusal(ticket_id: uuid.UUID, why: str) -> dict[str, Any]:
    """`AuditTrail.record` keywords of a refused ticket access (ids and a reason only)."""
    return {
        "action": "access.denied",
        "outcome": "denied",
        "table": TABLE,
        "record_id": ticket_id,
        "details": {"why": why},
    }


@dataclass
class TicketView:
    """A ticket with its text decrypted, for the API."""

    ticket: Ticket
    title: str | None
    description: str | None
    tags: list[str]
    workflow: TicketState | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


async def view(session: AsyncSession, runtime: Runtime, ticket: Ticket) -> TicketView:
    key = await runtime.keys.get(session, ticket.data_key_id)
    tags = await ticket_tags.read(session, key, ticket.id)
    return TicketView(
        ticket=ticket,
        title=ticket_text.open_(key, ticket.id, "title", ticket.title_enc),
        description=ticket_text.open_(key, ticket.id, "description", ticket.description_enc),
        tags=tags,
    )


async def read_view(
    runtime: Runtime,
    caller_id: uuid.UUID,
    caller_role: str,
    ticket_id: uuid.UUID,
    *,
    audit_action: str | None = "ticket.read",
    attachments_for: Any = None,
) -> TicketView:
    """Load, authorise, decrypt and (optionally) audit the read, in one short transaction
    (a read snapshot when there is nothing to audit). With `attachments_for` (the caller),
    the attachments that caller may see are listed in the same transaction, into
    `extra["attachments"]`."""
    unit = runtime.database.transaction() if audit_action else runtime.database.read()
    async with unit as session:
        ticket = await load_visible(session, caller_id, caller_role, ticket_id)
        result = await view(session, runtime, ticket)
        if audit_action:
            await runtime.audit.record(session, audit_action, table=TABLE, record_id=ticket.id)
        if attachments_for is not None:
            result.extra["attachments"] = await attachments.list_for_ticket(
                session, runtime, attachments_for, ticket
            )
        return result


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: uuid.UUID
    at: datetime
    actor_id: uuid.UUID | None
    action: str
    changes: dict[str, Any]
    note: str | None


async def history(
    runtime: Runtime, caller_id: uuid.UUID, caller_role: str, ticket_id: uuid.UUID
) -> list[HistoryEntry]:
    """A ticket's timeline, oldest first; notes decrypted under the ticket's key."""
    async with runtime.database.transaction() as session:
        ticket = await load_visible(session, caller_id, caller_role, ticket_id)
        key = await runtime.keys.get(session, ticket.data_key_id)
        rows = await session.scalars(
            select(TicketHistory)
            .where(TicketHistory.ticket_id == ticket_id)
            .order_by(TicketHistory.at, TicketHistory.id)
        )
        entries = []

        for row in rows:
            changes = dict(row.changes or {})
            if not history_entry_visible(caller_role, row.action, changes):
                continue  # internal-note entries are for staff only, on every channel
            if not can_see_escalation_target(caller_role):
                changes.pop("escalated_to", None)  # internal routing, like on the ticket
            if "tags" in changes:
                changes["tags"] = ticket_tags.open_change(
                    key, ticket_id, row.event_key, changes["tags"]
                )
            sealed = changes.pop("note", None)
            note = (
                open_note(key, ticket_id, row.event_key, sealed["sealed"])
                if isinstance(sealed, dict) and "sealed" in sealed
                else None
            )
            entries.append(HistoryEntry(row.id, row.at, row.actor_id, row.action, changes, note))
        await runtime.audit.record(session, "ticket.history.read", table=TABLE, record_id=ticket_id)
        return entries
