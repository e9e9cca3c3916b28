"""Ticket rows: creation (number, sealed text, row, history and audit in one transaction)
and the one idempotent write of every accepted change (`apply_change_to_row`, called by the
ticket workflow's persist activity).

The rest of the ticket core: `ticket_reads` (the object check, views, history),
`ticket_workflow` (the workflow from the API side, by contract names), `ticket_commands`
(what the routes call: slots, creation, changes under one deadline, disposal) and
`ticket_reconcile` (every live row has a workflow).

Durability of creation. The route commits the ticket row (with its history 'created' and
audit rows) BEFORE it starts the workflow, so a committed ticket is never lost; what can be
missing after a crash between the commit and the start is the workflow. Three things close
that gap: (1) the request itself starts it with update-with-start (USE_EXISTING, so a retry
or a concurrent start is harmless); (2) `reconcile_workflows`, run by the worker at start-up
and periodically, starts a workflow for every live row of the recent window that has none;
(3) any later command that finds no workflow for a live row starts it, then retries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import errors
from helpdesk.analytics import facts as analytics_facts
from helpdesk.context import current_context
from helpdesk.crypto import DataKey, WrappedKey, decrypt_field, encrypt_field
from helpdesk.rules import sla as sla_rules
from helpdesk.rules.contracts import (
    Actor,
    PersistChange,
    PersistResult,
)
from helpdesk.rules.sla import SlaState
from helpdesk.rules.sla_policy import SlaPolicySnapshot
from helpdesk.rules.transitions import Status
from helpdesk.runtime import Runtime
from helpdesk.services import assignment, satisfaction, ticket_tags, ticket_text
from helpdesk.services.categories import ensure_usable
from helpdesk.services.sla import policy_snapshot
from models.base import utcnow
from models.enums import Priority, TicketStatus
from models.ticket import IdempotencyRecord, Ticket, TicketHistory

log = logging.getLogger("helpdesk.tickets")

TABLE = "tickets"
HISTORY_TABLE = "ticket_history"
PRIORITY_RANK: dict[str, int] = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
# Statuses whose ticket has a running workflow (CLOSED: the workflow has completed).
LIVE_STATUSES = (
    TicketStatus.OPEN.value,
    TicketStatus.IN_PROGRESS.value,
    TicketStatus.RESOLVED.value,
)

T = TypeVar("T")


class NoAgentAvailable(errors.Conflict):
    """Automatic assignment found no active support agent."""


class AgentNotAssignable(errors.ValidationFailed):
    """The named assignee is not an active staff member."""


# --- the caller -----------------------------------------------------------------------


def actor_of(user_id: uuid.UUID, role: str) -> Actor:
    """The command's actor: the caller plus where the request came from (for the audit)."""
    ctx = current_context()
    return Actor(
        id=user_id, role=role, ip=ctx.ip, user_agent=ctx.user_agent, http_request_id=ctx.request_id
    )


def command_request_id(user_id: uuid.UUID, idempotency_key: str | None) -> str:
    """The id a workflow deduplicates: derived from the caller's Idempotency-Key (so a
    client's retry is applied once), else fresh."""
    if idempotency_key:
        return f"k-{uuid.uuid5(user_id, idempotency_key)}"
    return f"r-{uuid.uuid4()}"


# --- creation (database) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewTicket:
    title: str
    description: str | None
    priority: str = Priority.MEDIUM.value
    category_id: uuid.UUID | None = None
    tags: Sequence[str] = ()
    due_date: datetime | None = None

    def fingerprint(self) -> str:
        """A digest of the request body, to refuse a reused Idempotency-Key."""
        body = {
            "title": self.title,
            "description": self.description,
            "priority": self.priority,
            "category_id": str(self.category_id) if self.category_id else None,
            "tags": sorted(self.tags),
            "due_date": self.due_date.isoformat() if self.due_date else None,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def allocate_number(session: AsyncSession) -> int:
    """The next ticket number (a row lock on PostgreSQL, the write lock on SQLite)."""
    value = await session.scalar(
        text("UPDATE counters SET value = value + 1 WHERE name = 'ticket_number' RETURNING value")
    )
    if value is None:
        raise RuntimeError("the ticket_number counter row is missing (run the migrations)")
    return int(value)


async def idempotent_ticket(
    session: AsyncSession, user_id: uuid.UUID, key: str, fingerprint: str
) -> uuid.UUID | None:
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
        )
    )
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise errors.ValidationFailed(
            "this Idempotency-Key was already used with a different request",
            details={"header": "Idempotency-Key"},
        )
    return record.ticket_id


@dataclass(frozen=True, slots=True)
class Inserted:
    """A committed-to-be ticket row and the SLA clocks started with it."""

    ticket: Ticket
    sla: SlaState


@dataclass(frozen=True, slots=True)
class PreparedTicket:
    """What a new ticket needs that takes time but no write: checks, the policy in force,
    a fresh data key and the sealed text. Made before the write transaction, so the one
    SQLite writer is held only for the inserts."""

    ticket_id: uuid.UUID
    key: DataKey
    wrapped: WrappedKey
    title_enc: bytes | None
    description_enc: bytes | None
    policy: SlaPolicySnapshot


async def prepare_ticket(
    session: AsyncSession, runtime: Runtime, data: NewTicket
) -> PreparedTicket:
    """Validate and pre-compute a new ticket (reads only: a `Database.read()` session)."""
    await ensure_usable(session, data.category_id)
    policy = await policy_snapshot(session, runtime.settings, data.priority)
    key, wrapped = runtime.keys.keyring.new_data_key()
    ticket_id = uuid.uuid4()
    return PreparedTicket(
        ticket_id=ticket_id,
        key=key,
        wrapped=wrapped,
        title_enc=ticket_text.seal(key, ticket_id, "title", data.title),
        description_enc=ticket_text.seal(key, ticket_id, "description", data.description),
        policy=policy,
    )


async def insert_ticket(
    session: AsyncSession,
    runtime: Runtime,
    *,
    requester_id: uuid.UUID,
    data: NewTicket,
    auto_assign: bool,
    prepared: PreparedTicket | None = None,
) -> Inserted:
    """The ticket row with sealed text, search tokens, tags, its 'created' history entry
    and audit row, in the caller's transaction. With `auto_assign` the least-loaded agent
    is picked under the assignment lock in this same transaction.

    The SLA clocks start here too (from the policy snapshot `prepare_ticket` read), the due
    columns are written with the row, and the workflow receives the clocks in its input:
    its first task then only sets a timer instead of running two activities, which is what
    bounds the creation rate (bench/tickets.py)."""
    if prepared is None:
        prepared = await prepare_ticket(session, runtime, data)
    number = await allocate_number(session)
    runtime.keys.add(session, prepared.wrapped)
    ticket_id = prepared.ticket_id
    assignee = await assignment.assign_least_loaded_agent(session) if auto_assign else None
    ticket = Ticket(
        id=ticket_id,
        number=number,
        data_key_id=prepared.key.key_id,
        title_enc=prepared.title_enc,
        description_enc=prepared.description_enc,
        status=TicketStatus.OPEN.value,
        priority=data.priority,
        priority_rank=PRIORITY_RANK[data.priority],
        category_id=data.category_id,
        requester_id=requester_id,
        assignee_id=assignee,
        due_date=data.due_date,
        version=0,
        created_by=requester_id,
        updated_by=requester_id,
    )
    now = utcnow()
    ticket.created_at = ticket.updated_at = now
    sla = sla_rules.start(prepared.policy, now)
    due = sla_rules.due_dates(sla)
    ticket.due_date = due.due_date
    ticket.first_response_due_at = due.first_response_due_at
    ticket.resolution_due_at = due.resolution_due_at
    ticket.sla_at_risk_at = due.at_risk_at
    session.add(ticket)
    await session.flush()
    await analytics_facts.record(session, ticket, at=now)
    session.add_all(ticket_tags.rows_for(runtime.blind_index, prepared.key, ticket_id, data.tags))
    await ticket_text.reindex(
        session, runtime.blind_index, ticket_id, data.title, data.description, created_at=now
    )
    changes: dict[str, Any] = {
        "status": {"old": None, "new": TicketStatus.OPEN.value},
        "priority": {"old": None, "new": data.priority},
        "title": {"changed": True},
    }
    if data.description is not None:
        changes["description"] = {"changed": True}
    if data.category_id is not None:
        changes["category_id"] = {"old": None, "new": str(data.category_id)}
    if assignee is not None:
        changes["assignee_id"] = {"old": None, "new": str(assignee), "auto": True}
    session.add(
        TicketHistory(
            ticket_id=ticket_id,
            event_key="created",
            actor_id=requester_id,
            action="created",
            changes=changes,
        )
    )
    await runtime.audit.record(
        session,
        "ticket.create",
        table=TABLE,
        record_id=ticket_id,
        details={
            "number": number,
            "priority": data.priority,
            "auto_assigned": bool(assignee),
            "tags": len(data.tags),
        },
    )
    return Inserted(ticket, sla)


# --- the one write of an accepted change (called by the activity) ----------------------


def _seal_note(key: Any, ticket_id: uuid.UUID, event_key: str, note: str) -> str:
    blob = encrypt_field(
        key, note, table=HISTORY_TABLE, column="note", row_id=f"{ticket_id}:{event_key}"
    )
    return base64.b64encode(blob).decode()


def open_note(key: Any, ticket_id: uuid.UUID, event_key: str, sealed: str) -> str | None:
    try:
        return decrypt_field(
            key,
            base64.b64decode(sealed),
            table=HISTORY_TABLE,
            column="note",
            row_id=f"{ticket_id}:{event_key}",
        )
    except Exception:  # integrity failure or a shredded key: never garbled text
        return None


async def apply_change(
    session: AsyncSession, runtime: Runtime, change: PersistChange
) -> PersistResult:
    """Write one accepted change: ticket row, history entry (unique per event key) and an
    audit row, in the caller's transaction. A repeat of the same event key writes nothing
    and answers as the first write did."""
    return (await apply_change_to_row(session, runtime, change))[0]


async def apply_change_to_row(
    session: AsyncSession, runtime: Runtime, change: PersistChange
) -> tuple[PersistResult, Ticket]:
    """`apply_change`, also handing back the ticket row as the change left it."""
    ticket = await session.get(Ticket, change.ticket_id, with_for_update=True)
    if ticket is None or ticket.deleted_at is not None:
        raise errors.Gone("the ticket was deleted")
    done = await session.scalar(
        select(TicketHistory).where(
            TicketHistory.ticket_id == change.ticket_id, TicketHistory.event_key == change.event_key
        )
    )
    if done is not None:
        return (
            PersistResult(
                applied=False, assignee_id=ticket.assignee_id, escalated_to=ticket.escalated_to
            ),
            ticket,
        )

    u = change.updates
    changes = dict(change.changes)
    now = utcnow()
    old_status = ticket.status
    if change.auto_assign:
        picked = await assignment.assign_least_loaded_agent(session, exclude_ticket=ticket.id)
        if picked is None:
            raise NoAgentAvailable("no active support agent can take the ticket")
        changes["assignee_id"] = {"old": _s(ticket.assignee_id), "new": str(picked), "auto": True}
        ticket.assignee_id = picked
    elif "assignee_id" in u.fields:
        if u.assignee_id is not None and not await assignment.is_assignable(session, u.assignee_id):
            raise AgentNotAssignable(
                "the assignee must be an active staff member", details={"field": "agent_id"}
            )
        ticket.assignee_id = u.assignee_id
    if "status" in u.fields and u.status is not None:
        ticket.status = u.status.value
        if u.status is Status.RESOLVED:
            ticket.resolved_at = now
        elif u.status is Status.CLOSED:
            ticket.closed_at = now
        elif u.status is Status.OPEN:
            ticket.resolved_at = None
    if "priority" in u.fields and u.priority is not None:
        ticket.priority = u.priority
        ticket.priority_rank = PRIORITY_RANK[u.priority]
    if "category_id" in u.fields:
        await ensure_usable(session, u.category_id)
        ticket.category_id = u.category_id
    if "due_date" in u.fields:
        ticket.due_date = u.due_date
    if "escalated" in u.fields and u.escalated is not None:
        ticket.escalated = u.escalated
        ticket.escalated_at = now if u.escalated else None
    if "escalation_level" in u.fields and u.escalation_level is not None:
        ticket.escalation_level = u.escalation_level
    if "escalated_to" in u.fields:
        target = u.escalated_to
        if target is None and u.escalated:  # named nobody: a manager (see escalation_manager)
            target = await assignment.escalation_manager(session, ticket)
            changes["escalated_to"] = _s(target)
        ticket.escalated_to = target
    key = None
    if "title" in u.fields or "description" in u.fields or "tags" in u.fields or change.note:
        key = await runtime.keys.get(session, ticket.data_key_id)
    if key is not None and "tags" in u.fields:
        old_tags = await ticket_tags.read(session, key, ticket.id)
        new_tags = await ticket_tags.replace(
            session, runtime.blind_index, key, ticket.id, u.tags or []
        )
        changes["tags"] = ticket_tags.seal_change(
            key, ticket.id, change.event_key, old_tags, new_tags
        )
    if key is not None and ("title" in u.fields or "description" in u.fields):
        if "title" in u.fields and u.title is not None:
            ticket.title_enc = ticket_text.seal(key, ticket.id, "title", u.title)
        if "description" in u.fields:
            ticket.description_enc = ticket_text.seal(key, ticket.id, "description", u.description)
        title = ticket_text.open_(key, ticket.id, "title", ticket.title_enc)
        description = ticket_text.open_(key, ticket.id, "description", ticket.description_enc)
        await ticket_text.reindex(session, runtime.blind_index, ticket.id, title, description)
    if key is not None and change.note:
        changes["note"] = {"sealed": _seal_note(key, ticket.id, change.event_key, change.note)}
    ticket.version = max(ticket.version, change.version)
    ticket.updated_by = change.actor.id
    ticket.updated_at = now
    session.add(
        TicketHistory(
            ticket_id=ticket.id,
            event_key=change.event_key,
            at=now,
            actor_id=change.actor.id,
            action=change.action,
            changes=changes,
        )
    )
    await session.flush()
    surveys = await satisfaction.on_status_change(session, runtime, ticket, old_status, now)
    await analytics_facts.record(session, ticket, at=now, surveys=surveys)
    audit_details = {k: v for k, v in changes.items() if k != "note"}
    if "note" in changes:
        audit_details["note"] = {"changed": True}
    await runtime.audit.record(
        session,
        f"ticket.{change.action}",
        table=TABLE,
        record_id=ticket.id,
        details={"event_key": change.event_key, "changes": audit_details},
        actor_id=change.actor.id,
        actor_role=change.actor.role,
    )
    return (
        PersistResult(
            applied=True, assignee_id=ticket.assignee_id, escalated_to=ticket.escalated_to
        ),
        ticket,
    )


def _s(value: Any) -> Any:
    return None if value is None else str(value)
