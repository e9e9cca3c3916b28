"""Routes: ticket commands (create, edit, status, assign, delete) and the single-ticket
reads (GET /tickets/{id} with its live workflow state, its history). The list is in
`ticket_queries`. Commands go through the ticket's workflow; reads come from the database.

Writes do not use the request-wide SessionDep: a transaction held open while the workflow
answers would serialise every request on SQLite's write lock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from api.deps import Admin, AnyUser, RuntimeDep, Staff
from api.schemas.attachments import AttachmentOut
from api.schemas.tickets import (
    AssignIn,
    HistoryEntryOut,
    StatusChangeIn,
    TicketCreate,
    TicketOut,
    TicketUpdate,
    WorkflowStateOut,
)
from helpdesk import errors, policy
from helpdesk.rules.contracts import TicketEdits
from helpdesk.rules.sla import clock_views
from helpdesk.rules.transitions import Status
from helpdesk.services import ticket_commands, ticket_reads, ticket_workflow, tickets
from models.enums import Priority, Role, TicketStatus

router = APIRouter()

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key is applied once (same ticket on create)",
    ),
]


def _out(v: ticket_reads.TicketView, role: Role) -> TicketOut:
    t = v.ticket
    state = v.workflow
    return TicketOut(
        id=t.id,
        number=t.number,
        title=v.title,
        description=v.description,
        status=TicketStatus(t.status),
        priority=Priority(t.priority),
        category_id=t.category_id,
        tags=v.tags,
        requester_id=t.requester_id,
        assignee_id=t.assignee_id,
        due_date=t.due_date,
        escalated=t.escalated,
        escalation_level=t.escalation_level,
        escalated_at=t.escalated_at,
        escalated_to=t.escalated_to if policy.can_see_escalation_target(role) else None,
        created_at=t.created_at,
        updated_at=t.updated_at,
        resolved_at=t.resolved_at,
        closed_at=t.closed_at,
        version=t.version,
        workflow=WorkflowStateOut(
            status=TicketStatus(state.status.value),
            priority=Priority(state.priority),
            assignee_id=state.assignee_id,
            escalated=state.escalated,
            escalation_level=state.escalation_level,
            version=state.version,
        )
        if state is not None
        else None,
        # Each SLA clock of the live state (none when the workflow did not answer).
        sla=clock_views(state.sla, datetime.now(UTC)) if state and state.sla else [],
    )


@router.post("/tickets", status_code=status.HTTP_201_CREATED, response_model=TicketOut)
async def create_ticket(
    body: TicketCreate,
    principal: AnyUser,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TicketOut:
    """Open a ticket. Answers once the row exists and its workflow runs; the same
    Idempotency-Key with the same body answers with the same ticket (a different body: 422).
    503 with Retry-After when the help desk is saturated."""
    data = tickets.NewTicket(
        title=body.title,
        description=body.description,
        priority=body.priority.value,
        category_id=body.category_id,
        tags=tuple(body.tags),
        due_date=body.due_date,
    )
    result = await ticket_commands.create(
        runtime,
        requester_id=principal.id,
        requester_role=principal.role.value,
        data=data,
        idempotency_key=idempotency_key,
    )
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _out(result, principal.role)


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
async def get_ticket(ticket_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep) -> TicketOut:
    """One ticket from the read model, with the live state of its workflow."""
    result = await ticket_reads.read_view(
        runtime, principal.id, principal.role.value, ticket_id, attachments_for=principal
    )
    if result.ticket.status != Status.CLOSED.value:
        result.workflow = await ticket_workflow.query_state(runtime, ticket_id)
    out = _out(result, principal.role)
    out.attachments = [AttachmentOut.model_validate(i) for i in result.extra["attachments"]]
    return out


@router.put("/tickets/{ticket_id}", response_model=TicketOut)
async def update_ticket(
    ticket_id: uuid.UUID,
    body: TicketUpdate,
    principal: AnyUser,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TicketOut:
    """Edit a ticket. End users: title, description and tags of their own tickets (other
    fields → 403); staff: every field."""
    sent = sorted(body.model_fields_set)
    # Refused here without a round trip to the workflow, which applies the same rule.
    refused = policy.fields_refused_to(principal.role, set(sent))
    if refused:
        raise errors.PermissionDenied(policy.STAFF_ONLY_FIELDS_MESSAGE, details={"fields": refused})
    edits = TicketEdits(
        fields=sent,
        title=body.title,
        description=body.description,
        priority=body.priority.value if body.priority else None,
        category_id=body.category_id,
        due_date=body.due_date,
        tags=list(body.tags) if body.tags is not None else None,
    )
    result = await ticket_commands.edit(
        runtime,
        principal.id,
        principal.role.value,
        ticket_id,
        edits=edits,
        request_id=tickets.command_request_id(principal.id, idempotency_key),
    )
    return _out(result, principal.role)


@router.post("/tickets/{ticket_id}/status", response_model=TicketOut)
async def change_ticket_status(
    ticket_id: uuid.UUID,
    body: StatusChangeIn,
    principal: AnyUser,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TicketOut:
    """Move a ticket along OPEN → IN_PROGRESS → RESOLVED → CLOSED (or reopen a RESOLVED
    one). An illegal move → 409 with `details.allowed`; a move this caller may not make →
    403. End users may close or reopen their own RESOLVED tickets."""
    result = await ticket_commands.change_status(
        runtime,
        principal.id,
        principal.role.value,
        ticket_id,
        status=Status(body.status.value),
        note=body.note,
        request_id=tickets.command_request_id(principal.id, idempotency_key),
    )
    return _out(result, principal.role)


@router.post("/tickets/{ticket_id}/assign", response_model=TicketOut)
async def assign_ticket(
    ticket_id: uuid.UUID,
    body: AssignIn,
    principal: Staff,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> TicketOut:
    """Assign to an agent, or `{"auto": true}` for the least-loaded support agent. Agents
    may assign only themselves (or auto); managers and administrators anyone on staff."""
    result = await ticket_commands.assign(
        runtime,
        principal.id,
        principal.role.value,
        ticket_id,
        agent_id=body.agent_id,
        auto=body.auto,
        request_id=tickets.command_request_id(principal.id, idempotency_key),
    )
    return _out(result, principal.role)


@router.delete("/tickets/{ticket_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_ticket(ticket_id: uuid.UUID, principal: Admin, runtime: RuntimeDep) -> Response:
    """Dispose of a ticket (administrators): its data key is destroyed (crypto-shredding),
    its workflow ends; later reads answer 410."""
    await ticket_commands.dispose(runtime, principal.id, principal.role.value, ticket_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tickets/{ticket_id}/history", response_model=list[HistoryEntryOut])
async def ticket_history(
    ticket_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep
) -> list[HistoryEntryOut]:
    """Who changed what and when, oldest first."""
    entries = await ticket_reads.history(runtime, principal.id, principal.role.value, ticket_id)
    return [
        HistoryEntryOut(
            id=e.id, at=e.at, actor_id=e.actor_id, action=e.action, changes=e.changes, note=e.note
        )
        for e in entries
    ]
