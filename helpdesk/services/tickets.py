"""Ticket commands: the database side (creation, the one idempotent write of every accepted
change, disposal, decrypted views, history) and the Temporal side (starting a ticket's
workflow with update-with-start, sending it updates with retries, reconciling rows that
lack a workflow).

Durability of creation. The route commits the ticket row (with its history 'created' and
audit rows) BEFORE it starts the workflow, so a committed ticket is never lost; what can be
missing after a crash between the commit and the start is the workflow. Three things close
that gap: (1) the request itself starts it with update-with-start (USE_EXISTING, so a retry
or a concurrent start is harmless); (2) `reconcile_workflows`, run by the worker at start-up
and periodically, starts a workflow for every live row of the recent window that has none;
(3) any later command that finds no workflow for a live row starts it, then retries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from helpdesk import errors, metrics
from helpdesk.analytics import facts as analytics_facts
from helpdesk.context import current_context
from helpdesk.crypto import DataKey, WrappedKey, decrypt_field, encrypt_field
from helpdesk.deadline import command_deadline
from helpdesk.rules import sla as sla_rules
from helpdesk.rules.contracts import (
    TICKET_STATE_QUERY,
    TICKET_WORKFLOW,
    Actor,
    AssignRequest,
    EditRequest,
    EscalateRequest,
    OpenRequest,
    PersistChange,
    PersistResult,
    StatusChange,
    TicketCommand,
    TicketConfig,
    TicketEdits,
    TicketInput,
    TicketState,
)
from helpdesk.rules.sla import SlaPolicySnapshot, SlaState
from helpdesk.rules.transitions import Status
from helpdesk.runtime import Runtime
from helpdesk.services import assignment, satisfaction, ticket_tags, ticket_text
from helpdesk.services.categories import ensure_usable
from helpdesk.services.sla import policy_snapshot
from helpdesk.services.sla_resume import resumed_sla
from helpdesk.temporal import (
    ASSIGNED_AGENT,
    ESCALATED,
    TICKET_PRIORITY,
    TICKET_STATUS,
    ticket_workflow_id,
)
from models.base import utcnow
from models.enums import Priority, TicketStatus
from models.ticket import IdempotencyRecord, Ticket, TicketHistory, TicketTag

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


async def _idempotent_ticket(
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


def _open_note(key: Any, ticket_id: uuid.UUID, event_key: str, sealed: str) -> str | None:
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


# --- reads -----------------------------------------------------------------------------


async def load_visible(
    session: AsyncSession, caller_id: uuid.UUID, caller_role: str, ticket_id: uuid.UUID
) -> Ticket:
    """The ticket if the caller may see it: 404 for a missing ticket or someone else's (an
    end user learns nothing about tickets not theirs), 410 once it was deleted.

    The one object check of every ticket route (read, history, edit, status, assign,
    escalate, delete): each refusal carries its `access.denied` audit row, written by the
    API's error handler in a transaction of its own (the caller's rolls back)."""
    from helpdesk.policy import is_staff

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
            from helpdesk.services import attachments

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
        from helpdesk.policy import can_see_escalation_target, history_entry_visible

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
                _open_note(key, ticket_id, row.event_key, sealed["sealed"])
                if isinstance(sealed, dict) and "sealed" in sealed
                else None
            )
            entries.append(HistoryEntry(row.id, row.at, row.actor_id, row.action, changes, note))
        await runtime.audit.record(session, "ticket.history.read", table=TABLE, record_id=ticket_id)
        return entries


# --- the workflow side -------------------------------------------------------------------


def ticket_config(runtime: Runtime) -> TicketConfig:
    return TicketConfig(
        continue_as_new_after_events=runtime.settings.ticket_continue_as_new_after_events
    )


def workflow_input(
    ticket: Ticket, config: TicketConfig, sla: SlaState | None = None
) -> TicketInput:
    """A workflow's start input, from the ticket's row (creation and reconciliation alike)."""
    return TicketInput(
        state=TicketState(
            ticket_id=ticket.id,
            number=ticket.number,
            requester_id=ticket.requester_id,
            status=Status(ticket.status),
            priority=ticket.priority,
            assignee_id=ticket.assignee_id,
            category_id=ticket.category_id,
            due_date=ticket.due_date,
            escalated=ticket.escalated,
            escalation_level=ticket.escalation_level,
            version=ticket.version,
            sla=sla,
        ),
        config=config,
    )


def initial_search_attributes(state: TicketState) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(TICKET_STATUS, state.status.value),
        SearchAttributePair(TICKET_PRIORITY, state.priority),
        SearchAttributePair(ESCALATED, state.escalated),
    ]
    if state.assignee_id is not None:
        pairs.append(SearchAttributePair(ASSIGNED_AGENT, str(state.assignee_id)))
    return TypedSearchAttributes(pairs)


def start_operation(runtime: Runtime, inp: TicketInput) -> WithStartWorkflowOperation[Any, Any]:
    state = inp.state
    return WithStartWorkflowOperation(
        TICKET_WORKFLOW,
        inp,
        result_type=TicketState,
        id=ticket_workflow_id(state.ticket_id),
        task_queue=runtime.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A completed run (closed or deleted ticket) is never started again; a failed or
        # terminated one may be, by the reconciler.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=initial_search_attributes(state),
        # Never the title: number, priority and status at start (readable in the UI's list).
        static_summary=f"Ticket #{state.number} · {state.priority} · {state.status.value}",
        static_details="Help desk ticket: status, priority and assignment are its search "
        "attributes; the text is encrypted.",
    )


def _client(runtime: Runtime) -> Client:
    if runtime.temporal is None:
        raise errors.Unavailable("the workflow engine is not connected", retry_after=5)
    client: Client = runtime.temporal
    return client


async def _with_retries(runtime: Runtime, call: Callable[[], Awaitable[T]]) -> T:
    """Run a Temporal call under the command timeout, retrying UNAVAILABLE and
    RESOURCE_EXHAUSTED (same request id: the workflow deduplicates). Ends in 503 / 429."""
    settings = runtime.settings
    delay = 0.05
    last: RPCError | None = None
    # One deadline for every attempt and pause (and for the whole command when the caller
    # opened it): the SDK itself retries an unreachable server for 6 to 9 s per call.
    async with command_deadline(settings.ticket_command_timeout_seconds):
        for attempt in range(settings.ticket_command_retries):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 3, 2.0)
            try:
                return await call()
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                raise errors.Unavailable(
                    "the ticket's workflow did not answer in time", retry_after=5
                ) from None
            except RPCError as err:
                if err.status not in (
                    RPCStatusCode.UNAVAILABLE,
                    RPCStatusCode.RESOURCE_EXHAUSTED,
                ):
                    raise
                last = err
    if last is not None and last.status is RPCStatusCode.RESOURCE_EXHAUSTED:
        raise errors.RateLimited("the ticket is busy; retry shortly", retry_after=1)
    raise errors.Unavailable("the workflow engine is unavailable", retry_after=2)


def domain_error(err: WorkflowUpdateFailedError) -> errors.DomainError:
    """A refused update, as the domain error the API maps to a status."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return errors.Unavailable("the change could not be applied; retry", retry_after=2)
    details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
    message = cause.message
    match cause.type:
        case "InvalidTransition":
            return errors.InvalidTransition(message, details=details)
        case "TransitionNotPermitted" | "PermissionDenied":
            return errors.PermissionDenied(message, details=details)
        case "TicketGone":
            return errors.Gone("this ticket was deleted")
        case "NoAgentAvailable":
            return errors.Conflict(message, details=details)
        case "ValidationFailed" | "AgentNotAssignable":
            return errors.ValidationFailed(message, details=details)
        case _:
            return errors.Unavailable("the change could not be applied; retry", retry_after=2)


async def ensure_workflow(
    runtime: Runtime, ticket: Ticket, sla: SlaState | None = None
) -> TicketState | None:
    """Start the ticket's workflow if it does not run (update-with-start, USE_EXISTING) and
    wait until it answers. None when the ticket's workflow has completed (closed)."""
    client = _client(runtime)
    inp = workflow_input(ticket, ticket_config(runtime), sla)

    async def call() -> TicketState:
        state: TicketState = await client.execute_update_with_start_workflow(
            TicketCommand.OPENED.value,
            OpenRequest(request_id=f"open-{ticket.id}"),
            start_workflow_operation=start_operation(runtime, inp),
            result_type=TicketState,
        )
        return state

    try:
        return await _with_retries(runtime, call)
    except WorkflowAlreadyStartedError:
        return None  # a completed run exists: the ticket is closed or gone
    except WorkflowUpdateFailedError as err:
        raise domain_error(err) from None


async def send_update(
    runtime: Runtime, ticket_id: uuid.UUID, update: TicketCommand, request: Any
) -> TicketState:
    """Send a ticket's workflow an update and return the state it answers with."""
    client = _client(runtime)
    handle = client.get_workflow_handle(ticket_workflow_id(ticket_id))

    # The update id is the request id too: the server then deduplicates a retried call
    # within a run, and the workflow's own set covers continue-as-new.
    update_id = getattr(request, "request_id", None)

    async def call() -> TicketState:
        state: TicketState = await handle.execute_update(
            update.value, request, id=update_id, result_type=TicketState
        )
        return state

    kind = update.value
    for attempt in range(2):
        try:
            state = await _with_retries(runtime, call)
            metrics.TICKET_COMMANDS.labels(kind=kind, outcome="ok").inc()
            return state
        except WorkflowUpdateFailedError as err:
            metrics.TICKET_COMMANDS.labels(kind=kind, outcome="refused").inc()
            raise domain_error(err) from None
        except (errors.Unavailable, errors.RateLimited):
            metrics.TICKET_COMMANDS.labels(kind=kind, outcome="unavailable").inc()
            raise
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or attempt:
                metrics.TICKET_COMMANDS.labels(kind=kind, outcome="unavailable").inc()
                raise errors.Unavailable(
                    "the workflow engine refused the call", retry_after=2
                ) from None
            # No running workflow: closed, deleted, or never started (a crash between
            # the row's commit and the start). Decide from the row.
            async with runtime.database.transaction() as session:
                ticket = await session.get(Ticket, ticket_id)
                sla = None
                if ticket is not None and ticket.status in LIVE_STATUSES:
                    sla = await resumed_sla(session, runtime.settings, ticket)
            if ticket is None or ticket.deleted_at is not None:
                raise errors.Gone("this ticket was deleted") from None
            if ticket.status == TicketStatus.CLOSED.value:
                raise errors.InvalidTransition(
                    "the ticket is closed", details={"current": "CLOSED", "allowed": []}
                ) from None
            if await ensure_workflow(runtime, ticket, sla) is None:
                raise errors.InvalidTransition(
                    "the ticket is closed", details={"current": ticket.status, "allowed": []}
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


async def query_state(runtime: Runtime, ticket_id: uuid.UUID) -> TicketState | None:
    """The live workflow state, or None when the workflow cannot answer quickly."""
    if runtime.temporal is None:
        return None
    handle = runtime.temporal.get_workflow_handle(ticket_workflow_id(ticket_id))
    try:
        async with asyncio.timeout(runtime.settings.ticket_query_timeout_seconds):
            state: TicketState = await handle.query(TICKET_STATE_QUERY, result_type=TicketState)
            return state
    except Exception as exc:  # the read model still answers; the live part is optional
        log.info("live state of ticket %s unavailable: %s", ticket_id, type(exc).__name__)
        return None


# --- command entry points (what the routes call) ---------------------------------------


@dataclass
class _Slots:
    """A kind of request's in-flight slots, and how long an admitted one takes lately."""

    semaphore: asyncio.Semaphore
    seconds: float = 1.0  # moving average of an admitted request's duration

    def retry_after(self) -> int:
        """Whole seconds a refused client should wait: about one request's duration, by
        which time a slot has most likely come free (1 s at least, 30 at most)."""
        return max(1, min(30, math.ceil(self.seconds)))


def _slots(runtime: Runtime, name: str, size: int) -> _Slots:
    slots = runtime.extras.get(name)
    if slots is None:
        slots = runtime.extras[name] = _Slots(asyncio.Semaphore(size))
    assert isinstance(slots, _Slots)
    return slots


@contextlib.asynccontextmanager
async def _slot(runtime: Runtime, name: str, size: int) -> AsyncIterator[None]:
    """Refuse at once (503 + Retry-After) when the process already has as many of these
    requests in flight as it carries: queueing beyond that only makes every answer late
    (TEMPORAL.md). The API takes the slot before authenticating, so a flood costs little.
    Retry-After follows how long admitted requests take, so well-behaved clients do not
    come back sooner than a slot can free up."""
    slots = _slots(runtime, name, size)
    if slots.semaphore.locked():
        metrics.REQUESTS_SHED.labels(kind=name.removesuffix("_slots")).inc()
        raise errors.Unavailable(
            "the help desk is busy; retry shortly", retry_after=slots.retry_after()
        )
    async with slots.semaphore:
        started = time.monotonic()
        try:
            yield
        finally:
            slots.seconds += 0.1 * (time.monotonic() - started - slots.seconds)


def creation_slot(runtime: Runtime) -> contextlib.AbstractAsyncContextManager[None]:
    return _slot(runtime, "ticket_create_slots", runtime.settings.ticket_create_max_in_flight)


def command_slot(runtime: Runtime) -> contextlib.AbstractAsyncContextManager[None]:
    return _slot(runtime, "ticket_command_slots", runtime.settings.ticket_command_max_in_flight)


async def create(
    runtime: Runtime,
    *,
    requester_id: uuid.UUID,
    data: NewTicket,
    idempotency_key: str | None,
) -> TicketView:
    """Create a ticket: commit its row, then start its workflow (update-with-start) and
    answer once the workflow runs. The same Idempotency-Key answers with the same ticket.
    The whole of it ends within the command timeout (503 past it)."""
    async with command_deadline(runtime.settings.ticket_command_timeout_seconds):
        return await _create(
            runtime, requester_id=requester_id, data=data, idempotency_key=idempotency_key
        )


async def _create(
    runtime: Runtime,
    *,
    requester_id: uuid.UUID,
    data: NewTicket,
    idempotency_key: str | None,
) -> TicketView:
    fingerprint = data.fingerprint()
    ticket: Ticket | None = None
    sla: SlaState | None = None
    replayed = False
    prepared: PreparedTicket | None = None
    async with runtime.database.read() as session:
        existing = (
            await _idempotent_ticket(session, requester_id, idempotency_key, fingerprint)
            if idempotency_key
            else None
        )
        if existing is None:
            prepared = await prepare_ticket(session, runtime, data)
    try:
        async with runtime.database.transaction() as session:
            if existing is None and idempotency_key:
                # Judged again under the write lock (a concurrent retry may have won).
                existing = await _idempotent_ticket(
                    session, requester_id, idempotency_key, fingerprint
                )
            if existing is not None:
                ticket = await session.get(Ticket, existing)
                replayed = True
            else:
                inserted = await insert_ticket(
                    session,
                    runtime,
                    requester_id=requester_id,
                    data=data,
                    auto_assign=runtime.settings.auto_assign_on_create,
                    prepared=prepared,
                )
                ticket, sla = inserted.ticket, inserted.sla
                if idempotency_key:
                    session.add(
                        IdempotencyRecord(
                            user_id=requester_id,
                            key=idempotency_key,
                            request_hash=fingerprint,
                            ticket_id=ticket.id,
                        )
                    )
    except SAIntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the race (PostgreSQL): answer as its
        # replay.
        async with runtime.database.transaction() as session:
            existing = await _idempotent_ticket(session, requester_id, idempotency_key, fingerprint)
            ticket = await session.get(Ticket, existing) if existing else None
            replayed = True
    if ticket is None:
        raise errors.NotFound("ticket not found")
    if ticket.deleted_at is not None:
        raise errors.Gone("this ticket was deleted")
    state = None
    if ticket.status in LIVE_STATUSES:
        state = await ensure_workflow(runtime, ticket, sla)
    if replayed:
        async with runtime.database.transaction() as session:
            fresh = await session.get(Ticket, ticket.id)
            assert fresh is not None
            result = await view(session, runtime, fresh)
    else:
        # The row as committed, and the text this request brought: no second read.
        result = TicketView(
            ticket=ticket,
            title=data.title,
            description=data.description,
            tags=ticket_tags.normalised(data.tags),
        )
    result.workflow = state
    result.replayed = replayed
    return result


async def _command(
    runtime: Runtime,
    caller_id: uuid.UUID,
    caller_role: str,
    ticket_id: uuid.UUID,
    update: TicketCommand,
    request: Any,
) -> TicketView:
    """Authorise against the row, send the update, answer with the row as the activity
    left it plus the state the workflow returned. Both reads are snapshots: on SQLite they
    neither wait behind nor hold up the one writer (the workflow's own activities). The
    update, its retries and a restart of the workflow share one deadline."""
    async with runtime.database.read() as session:
        await load_visible(session, caller_id, caller_role, ticket_id)
    async with command_deadline(runtime.settings.ticket_command_timeout_seconds):
        state = await send_update(runtime, ticket_id, update, request)
    result = await read_view(runtime, caller_id, caller_role, ticket_id, audit_action=None)
    result.workflow = state
    return result


async def change_status(
    runtime: Runtime,
    caller_id: uuid.UUID,
    caller_role: str,
    ticket_id: uuid.UUID,
    *,
    status: Status,
    note: str | None,
    request_id: str,
) -> TicketView:

    req = StatusChange(
        request_id=request_id, actor=actor_of(caller_id, caller_role), status=status, note=note
    )
    return await _command(
        runtime, caller_id, caller_role, ticket_id, TicketCommand.CHANGE_STATUS, req
    )


async def assign(
    runtime: Runtime,
    caller_id: uuid.UUID,
    caller_role: str,
    ticket_id: uuid.UUID,
    *,
    agent_id: uuid.UUID | None,
    auto: bool,
    request_id: str,
) -> TicketView:

    if agent_id is not None:
        async with runtime.database.read() as session:
            if not await assignment.is_assignable(session, agent_id):
                raise AgentNotAssignable(
                    "the assignee must be an active staff member", details={"field": "agent_id"}
                )
    req = AssignRequest(
        request_id=request_id, actor=actor_of(caller_id, caller_role), agent_id=agent_id, auto=auto
    )
    return await _command(runtime, caller_id, caller_role, ticket_id, TicketCommand.ASSIGN, req)


async def assign_system(runtime: Runtime, ticket_id: uuid.UUID, *, request_id: str) -> TicketState:
    """Automatic re-assignment by the help desk itself (an agent was deactivated)."""

    req = AssignRequest(request_id=request_id, actor=Actor.system(), auto=True)
    return await send_update(runtime, ticket_id, TicketCommand.ASSIGN, req)


async def edit(
    runtime: Runtime,
    caller_id: uuid.UUID,
    caller_role: str,
    ticket_id: uuid.UUID,
    *,
    edits: TicketEdits,
    request_id: str,
) -> TicketView:

    if "category_id" in edits.fields:
        async with runtime.database.transaction() as session:
            await ensure_usable(session, edits.category_id)
    req = EditRequest(request_id=request_id, actor=actor_of(caller_id, caller_role), edits=edits)
    return await _command(runtime, caller_id, caller_role, ticket_id, TicketCommand.EDIT, req)


async def escalate(
    runtime: Runtime,
    caller_id: uuid.UUID,
    caller_role: str,
    ticket_id: uuid.UUID,
    *,
    escalated_to: uuid.UUID | None,
    request_id: str,
    reason: str = "manual",
) -> TicketView:

    # `reason` is a code (api.schemas.sla.EscalationReason), never free text.
    req = EscalateRequest(
        request_id=request_id,
        actor=actor_of(caller_id, caller_role),
        escalated_to=escalated_to,
        reason=reason,
    )
    return await _command(runtime, caller_id, caller_role, ticket_id, TicketCommand.ESCALATE, req)


async def dispose(
    runtime: Runtime, caller_id: uuid.UUID, caller_role: str, ticket_id: uuid.UUID
) -> None:
    """Delete a ticket: destroy its data key (crypto-shredding: every copy of its text and
    notes becomes unreadable; backups made before keep the key until they are pruned, see
    README "Backups and disaster recovery"), drop text, tokens and tags, mark the row
    deleted (later reads answer 410), then end and delete its workflow execution."""
    async with runtime.database.transaction() as session:
        ticket = await load_visible(session, caller_id, caller_role, ticket_id)
        key_id = ticket.data_key_id
        ticket.deleted_at = utcnow()
        ticket.title_enc = None
        ticket.description_enc = None
        ticket.data_key_id = None
        ticket.updated_by = caller_id
        await session.flush()
        await runtime.keys.destroy(session, key_id)
        await session.execute(delete(TicketTag).where(TicketTag.ticket_id == ticket_id))
        await ticket_text.reindex(session, runtime.blind_index, ticket_id, None, None)
        session.add(
            TicketHistory(
                ticket_id=ticket_id,
                event_key="deleted",
                actor_id=caller_id,
                action="deleted",
                changes={"deleted": True},
            )
        )
        await runtime.audit.record(
            session,
            "ticket.delete",
            table=TABLE,
            record_id=ticket_id,
            details={"number": ticket.number, "crypto_shredded": True},
        )
    await end_workflow(runtime, ticket_id)
    # The attachments' bytes are unreadable already (their key is gone); remove them too.
    from helpdesk.services import attachments

    await attachments.delete_ticket_attachments(runtime, ticket_id)


async def end_workflow(runtime: Runtime, ticket_id: uuid.UUID) -> None:
    """Terminate and delete the ticket's workflow execution (its encrypted history goes with
    it). Best effort after the row is disposed of: a workflow that survives finds its row
    gone at its next activity and ends itself."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

    if runtime.temporal is None:
        return
    client: Client = runtime.temporal
    request = DeleteWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=ticket_workflow_id(ticket_id)),
    )
    try:
        await _with_retries(
            runtime, lambda: client.workflow_service.delete_workflow_execution(request)
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            log.warning("workflow of deleted ticket %s not deleted: %s", ticket_id, err.status)
    except errors.DomainError as exc:
        log.warning("workflow of deleted ticket %s not deleted: %s", ticket_id, exc.code)


# --- reconciliation ----------------------------------------------------------------------


async def reconcile_workflows(
    runtime: Runtime,
    *,
    grace_seconds: float = 10.0,
    concurrency: int = 16,
    window_hours: float | None = None,
) -> int:
    """Start a workflow for every live ticket row of the recent window that has no running
    workflow (the API died between committing the row and starting the workflow, or the
    start failed). Returns how many were started. Safe to run anywhere, any time: starts
    use USE_EXISTING, and a completed run is never restarted. `window_hours` overrides the
    setting (after a restore: every live ticket, whatever its age)."""
    client = _client(runtime)
    now = datetime.now(UTC)
    window = (
        runtime.settings.ticket_reconcile_window_hours if window_hours is None else window_hours
    )
    since = now - timedelta(hours=window)
    until = now - timedelta(seconds=grace_seconds)
    # Ids only, on a read snapshot (the window can hold many thousands of tickets, and this
    # runs every minute beside the API); whole rows only for the few without a workflow.
    async with runtime.database.read() as session:
        ids = list(
            await session.scalars(
                select(Ticket.id).where(
                    Ticket.status.in_(LIVE_STATUSES),
                    Ticket.deleted_at.is_(None),
                    Ticket.created_at >= since,
                    Ticket.created_at <= until,
                )
            )
        )
    if not ids:
        return 0
    running = await _running_ticket_workflows(client, since)
    missing_ids = [i for i in ids if ticket_workflow_id(i) not in running]
    if not missing_ids:
        return 0
    missing: list[Ticket] = []
    async with runtime.database.read() as session:
        for start in range(0, len(missing_ids), 500):
            chunk = missing_ids[start : start + 500]
            missing += list(
                await session.scalars(
                    select(Ticket).where(
                        Ticket.id.in_(chunk),
                        Ticket.status.in_(LIVE_STATUSES),
                        Ticket.deleted_at.is_(None),
                    )
                )
            )
    gate = asyncio.Semaphore(concurrency)
    started = 0

    async def one(ticket: Ticket) -> None:
        nonlocal started
        async with gate:
            try:
                # The clocks from the database, not from now (helpdesk.services.sla_resume).
                async with runtime.database.read() as session:
                    sla = await resumed_sla(session, runtime.settings, ticket)
                await ensure_workflow(runtime, ticket, sla)
                started += 1
            except (errors.DomainError, RPCError) as exc:
                log.warning("reconcile: ticket %s not started: %s", ticket.id, type(exc).__name__)

    await asyncio.gather(*(one(t) for t in missing))
    if started:
        log.info("reconcile: started %d missing ticket workflows", started)
    return started


async def _running_ticket_workflows(client: Client, since: datetime) -> set[str]:
    """Ids of running ticket workflows started since `since`, from visibility (eventually
    consistent: a workflow missing here is merely started again with USE_EXISTING)."""
    query = (
        f"WorkflowType = '{TICKET_WORKFLOW}' AND ExecutionStatus = 'Running' "
        f"AND StartTime >= '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    )
    ids: set[str] = set()
    try:
        async for execution in client.list_workflows(query, page_size=1000):
            ids.add(execution.id)
    except RPCError as err:
        log.warning("reconcile: visibility unavailable (%s); checking every row", err.status)
        return set()
    return ids


async def run_reconciler(runtime: Runtime, stop: asyncio.Event | None = None) -> None:
    """Reconcile at start-up, then every `ticket_reconcile_interval_seconds` until `stop`.
    The worker process runs this beside its worker."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await reconcile_workflows(runtime)
        except Exception as exc:  # keep reconciling: the next round may succeed
            log.warning("reconcile round failed: %s", type(exc).__name__)
        try:  # satisfaction surveys whose delay has passed
            await satisfaction.send_due(runtime)
        except Exception as exc:  # the next round tries again
            log.warning("survey round failed: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(
                stop.wait(), timeout=runtime.settings.ticket_reconcile_interval_seconds
            )
        except TimeoutError:
            pass


__all__ = [
    "AgentNotAssignable",
    "NewTicket",
    "NoAgentAvailable",
    "TicketView",
    "apply_change",
    "assign",
    "change_status",
    "create",
    "dispose",
    "edit",
    "ensure_workflow",
    "reconcile_workflows",
    "run_reconciler",
]
