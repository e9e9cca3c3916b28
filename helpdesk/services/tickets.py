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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import errors, numbers
from helpdesk.analytics import facts as analytics_facts
from helpdesk.context import current_context
from helpdesk.crypto import WrappedKey
from helpdesk.rules import sla as sla_rules
from helpdesk.rules.contracts import (
    Actor,
    PersistChange,
    PersistResult,
    SealedTicket,
    TicketCreated,
)
from helpdesk.rules.transitions import Status
from helpdesk.runtime import Runtime
from helpdesk.services import assignment, satisfaction, ticket_tags, ticket_text
from helpdesk.services.categories import ensure_usable
from helpdesk.services.sla import policy_snapshot
from helpdesk.services.sla_resume import resumed_sla
from helpdesk.services.ticket_history import insert_rows, seal_note, write_history
from models.base import utcnow
from models.enums import Priority, TicketStatus
from models.ticket import (
    IdempotencyRecord,
    Ticket,
    TicketHistory,
    TicketSearchToken,
    TicketTag,
)

log = logging.getLogger("helpdesk.tickets")

TABLE = "tickets"
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
    """The next ticket number, in the caller's transaction (seeding; the API takes its
    numbers from the process's block, `Runtime.ticket_numbers`)."""
    return await numbers.reserve(session, 1)


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


async def seal_new(
    session: AsyncSession,
    runtime: Runtime,
    *,
    ticket_id: uuid.UUID,
    number: int,
    requester: Actor,
    data: NewTicket,
    auto_assign: bool,
    idempotency_key: str | None = None,
) -> SealedTicket:
    """What the create activity writes for a new ticket, made where the plaintext is (the
    API, with reads only): the category checked, a fresh data key, the text sealed under it,
    the blind search and tag tokens. No plaintext leaves this function."""
    await ensure_usable(session, data.category_id)
    key, wrapped = runtime.keys.keyring.new_data_key()
    title_enc = ticket_text.seal(key, ticket_id, "title", data.title)
    description_enc = ticket_text.seal(key, ticket_id, "description", data.description)
    assert title_enc is not None
    tags = ticket_tags.rows_for(runtime.blind_index, key, ticket_id, data.tags)
    return SealedTicket(
        ticket_id=ticket_id,
        number=number,
        requester=requester,
        priority=data.priority,
        category_id=data.category_id,
        due_date=data.due_date,
        key_id=wrapped.key_id,
        kek_id=wrapped.kek_id,
        wrapped_key=_b64(wrapped.wrapped),
        title_enc=_b64(title_enc),
        description_enc=_b64(description_enc) if description_enc is not None else None,
        search_tokens=sorted(
            ticket_text.search_tokens(runtime.blind_index, data.title, data.description)
        ),
        tags=[(row.token, row.tag_sealed) for row in tags],
        auto_assign=auto_assign,
        idempotency_key=idempotency_key,
        fingerprint=data.fingerprint() if idempotency_key else None,
    )


async def written_row(
    session: AsyncSession, runtime: Runtime, ticket_id: uuid.UUID
) -> TicketCreated | None:
    """What an earlier attempt of `create_row` wrote for this ticket (`applied` False), or
    None when there is no such row."""
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    if ticket.deleted_at is not None:
        raise errors.Gone("the ticket was deleted")
    return TicketCreated(
        applied=False,
        assignee_id=ticket.assignee_id,
        due_date=ticket.due_date,
        sla=await resumed_sla(session, runtime.settings, ticket),
        version=ticket.version,
    )


async def create_row(
    session: AsyncSession, runtime: Runtime, new: SealedTicket, *, check: bool = True
) -> tuple[TicketCreated, Ticket | None]:
    """Write a new ticket, once: the row (with its SLA clocks started from the policy in
    force), search and tag tokens, the Idempotency-Key record, its `created` history entry
    and audit row, in the caller's transaction. The ticket workflow's first step calls it
    (through its create activity); a repeat finds the row and answers from it (no row
    handed back then). `check=False` skips that look-up: a repeat then fails on the
    ticket's (or its data key's) primary key, and the caller asks `written_row`."""
    found = await written_row(session, runtime, new.ticket_id) if check else None
    if found is not None:
        return found, None
    await ensure_usable(session, new.category_id)
    policy = await policy_snapshot(session, runtime.settings, new.priority)
    runtime.keys.add(session, WrappedKey(new.key_id, new.kek_id, base64.b64decode(new.wrapped_key)))
    assignee = await assignment.assign_least_loaded_agent(session) if new.auto_assign else None
    now = utcnow()
    sla = sla_rules.start(policy, now)
    due = sla_rules.due_dates(sla)
    requester_id = new.requester.id
    assert requester_id is not None
    ticket = Ticket(
        id=new.ticket_id,
        number=new.number,
        data_key_id=new.key_id,
        title_enc=base64.b64decode(new.title_enc),
        description_enc=base64.b64decode(new.description_enc) if new.description_enc else None,
        status=TicketStatus.OPEN.value,
        priority=new.priority,
        priority_rank=PRIORITY_RANK[new.priority],
        category_id=new.category_id,
        requester_id=requester_id,
        assignee_id=assignee,
        due_date=due.due_date,
        first_response_due_at=due.first_response_due_at,
        resolution_due_at=due.resolution_due_at,
        sla_at_risk_at=due.at_risk_at,
        version=0,
        created_by=requester_id,
        updated_by=requester_id,
    )
    ticket.created_at = ticket.updated_at = now
    session.add(ticket)
    await session.flush()
    # The rows that hang off the new ticket are only ever inserted here: Core inserts, no
    # unit of work. The tags first: the ticket's facts count it under each approved one.
    await insert_rows(
        session,
        TicketTag,
        [
            {"ticket_id": ticket.id, "token": token, "tag_sealed": sealed}
            for token, sealed in new.tags
        ],
    )
    await analytics_facts.record(
        session, ticket, tags=ticket_tags.analytics_tokens(runtime), at=now
    )
    await insert_rows(
        session,
        TicketSearchToken,
        [
            {"ticket_id": ticket.id, "token": token, "ticket_created_at": now}
            for token in new.search_tokens
        ],
    )
    if new.idempotency_key:
        record = {"user_id": requester_id, "key": new.idempotency_key, "ticket_id": ticket.id}
        record["request_hash"] = new.fingerprint or ""
        await insert_rows(session, IdempotencyRecord, [record])
    changes: dict[str, Any] = {
        "status": {"old": None, "new": TicketStatus.OPEN.value},
        "priority": {"old": None, "new": new.priority},
        "title": {"changed": True},
    }
    if new.description_enc is not None:
        changes["description"] = {"changed": True}
    if new.category_id is not None:
        changes["category_id"] = {"old": None, "new": str(new.category_id)}
    if assignee is not None:
        changes["assignee_id"] = {"old": None, "new": str(assignee), "auto": True}
    await write_history(session, ticket, "created", new.requester, "created", changes, now)
    await runtime.audit.record(
        session,
        "ticket.create",
        table=TABLE,
        record_id=ticket.id,
        details={
            "number": new.number,
            "priority": new.priority,
            "auto_assigned": bool(assignee),
            "tags": len(new.tags),
        },
        actor_id=requester_id,
        actor_role=new.requester.role,
    )
    created = TicketCreated(applied=True, assignee_id=assignee, due_date=due.due_date, sla=sla)
    return created, ticket


async def insert_ticket(
    session: AsyncSession,
    runtime: Runtime,
    *,
    requester_id: uuid.UUID,
    data: NewTicket,
    auto_assign: bool = False,
) -> Ticket:
    """A ticket row with no workflow, through the one writer (`create_row`): for seeding
    (tests, benchmarks). The product creates tickets through their workflow only."""
    ticket_id = uuid.uuid4()
    sealed = await seal_new(
        session,
        runtime,
        ticket_id=ticket_id,
        number=await allocate_number(session),
        requester=Actor(id=requester_id, role="END_USER"),
        data=data,
        auto_assign=auto_assign,
    )
    ticket = (await create_row(session, runtime, sealed))[1]
    assert ticket is not None  # a fresh id
    return ticket


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


# --- the one write of an accepted change (called by the activity) ----------------------


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
        changes["note"] = {"sealed": seal_note(key, ticket.id, change.event_key, change.note)}
    ticket.version = max(ticket.version, change.version)
    ticket.updated_by = change.actor.id
    ticket.updated_at = now
    await write_history(
        session, ticket, change.event_key, change.actor, change.action, changes, now
    )
    await session.flush()
    surveys = await satisfaction.on_status_change(session, runtime, ticket, old_status, now)
    await analytics_facts.record(
        session, ticket, tags=ticket_tags.analytics_tokens(runtime), at=now, surveys=surveys
    )
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
