"""Ticket commands, what the routes call: admission slots, creation (sealed here, written
by the ticket's workflow), and every change sent to the ticket's workflow under one deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from temporalio.client import (
    Client,
)
from temporalio.service import RPCError, RPCStatusCode

from helpdesk import errors, metrics
from helpdesk.deadline import command_deadline
from helpdesk.rules.contracts import (
    Actor,
    AssignRequest,
    EditRequest,
    EscalateRequest,
    SealedTicket,
    StatusChange,
    TicketCommand,
    TicketEdits,
    TicketState,
)
from helpdesk.rules.transitions import Status
from helpdesk.runtime import Runtime
from helpdesk.services import assignment, ticket_tags, ticket_text
from helpdesk.services.categories import ensure_usable
from helpdesk.services.ticket_reads import TicketView, load_visible, read_view, view
from helpdesk.services.ticket_workflow import (
    create_workflow,
    ensure_workflow,
    send_update,
    with_retries,
)
from helpdesk.services.tickets import (
    LIVE_STATUSES,
    TABLE,
    AgentNotAssignable,
    NewTicket,
    actor_of,
    idempotent_ticket,
    seal_new,
)
from helpdesk.temporal import (
    ticket_workflow_id,
)
from models.base import utcnow
from models.ticket import Ticket, TicketHistory, TicketTag

log = logging.getLogger("helpdesk.tickets")

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
    slots = runtime.admission.get(name)
    if slots is None:
        slots = runtime.admission[name] = _Slots(asyncio.Semaphore(size))
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
    requester_role: str = "END_USER",
    data: NewTicket,
    idempotency_key: str | None,
) -> TicketView:
    """Create a ticket: seal its text, then start its workflow (update-with-start), whose
    first step writes the row, and answer once it has. The same Idempotency-Key answers
    with the same ticket. The whole of it ends within the command timeout (503 past it)."""
    async with command_deadline(runtime.settings.ticket_command_timeout_seconds):
        return await _create(
            runtime,
            requester_id=requester_id,
            requester_role=requester_role,
            data=data,
            idempotency_key=idempotency_key,
        )


async def _create(
    runtime: Runtime,
    *,
    requester_id: uuid.UUID,
    requester_role: str,
    data: NewTicket,
    idempotency_key: str | None,
) -> TicketView:
    fingerprint = data.fingerprint()
    # Under an Idempotency-Key the ticket's id (so its workflow's id) follows from the key:
    # a retry, even one racing the first request, reaches the same workflow.
    ticket_id = (
        uuid.uuid5(requester_id, f"ticket:{idempotency_key}") if idempotency_key else uuid.uuid4()
    )
    async with runtime.database.read() as session:
        existing = (
            await idempotent_ticket(session, requester_id, idempotency_key, fingerprint)
            if idempotency_key
            else None
        )
        if existing is not None:
            return await _replay(runtime, existing)
        sealed = await seal_new(
            session,
            runtime,
            ticket_id=ticket_id,
            number=0,
            requester=actor_of(requester_id, requester_role),
            data=data,
            auto_assign=runtime.settings.auto_assign_on_create,
            idempotency_key=idempotency_key,
        )
    sealed.number = await runtime.ticket_numbers.take()
    state = await create_workflow(runtime, sealed)
    if state is None:  # a completed run holds this id: the key's ticket is closed or gone
        return await _replay(runtime, ticket_id)
    written = _written_row(state, sealed)
    if written is not None:
        # The row as this request's create activity wrote it, and the text this request
        # brought: no read, no decryption.
        return TicketView(
            ticket=written,
            title=data.title,
            description=data.description,
            tags=ticket_tags.normalised(data.tags),
            workflow=state,
        )
    async with runtime.database.read() as session:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:  # pragma: no cover - `opened` answers after the row's commit
            raise errors.Unavailable("the ticket is not written yet; retry", retry_after=1)
        if state.number != sealed.number:
            # Another request with this key wrote the ticket first (a race): answer with
            # its ticket, or 422 when it brought another body.
            if idempotency_key:
                await idempotent_ticket(session, requester_id, idempotency_key, fingerprint)
            result = await view(session, runtime, ticket)
            result.replayed = True
        else:
            # The row as written, and the text this request brought: no decryption.
            result = TicketView(
                ticket=ticket,
                title=data.title,
                description=data.description,
                tags=ticket_tags.normalised(data.tags),
            )
    result.workflow = state
    return result


def _written_row(state: TicketState, sealed: SealedTicket) -> Ticket | None:
    """The new ticket's row as `create_row` wrote it, rebuilt from the `opened` answer (a
    transient object, never added to a session), or None when the answer cannot tell: it
    is another request's ticket (an Idempotency-Key race: another number) or carries no SLA
    clocks. A new row's every field follows from the sealed input and the workflow's state
    right after the create activity; its creation instant is when both SLA clocks started
    (`helpdesk.rules.sla.start`, given the same instant as the row)."""
    if state.number != sealed.number or state.sla is None or not state.sla.clocks:
        return None
    created_at = min(clock.started_at for clock in state.sla.clocks.values())
    return Ticket(
        id=state.ticket_id,
        number=state.number,
        status=state.status.value,
        priority=state.priority,
        category_id=state.category_id,
        requester_id=state.requester_id,
        assignee_id=state.assignee_id,
        due_date=state.due_date,
        escalated=state.escalated,
        escalation_level=state.escalation_level,
        escalated_at=None,
        escalated_to=None,
        resolved_at=None,
        closed_at=None,
        version=state.version,
        created_at=created_at,
        updated_at=created_at,
    )


async def _replay(runtime: Runtime, ticket_id: uuid.UUID) -> TicketView:
    """The answer to a repeated Idempotency-Key: the ticket as it is now."""
    async with runtime.database.read() as session:
        ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise errors.NotFound("ticket not found")
    if ticket.deleted_at is not None:
        raise errors.Gone("this ticket was deleted")
    state = await ensure_workflow(runtime, ticket) if ticket.status in LIVE_STATUSES else None
    async with runtime.database.read() as session:
        fresh = await session.get(Ticket, ticket_id)
        assert fresh is not None
        result = await view(session, runtime, fresh)
    result.workflow = state
    result.replayed = True
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
        await with_retries(
            runtime, lambda: client.workflow_service.delete_workflow_execution(request)
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            log.warning("workflow of deleted ticket %s not deleted: %s", ticket_id, err.status)
    except errors.DomainError as exc:
        log.warning("workflow of deleted ticket %s not deleted: %s", ticket_id, exc.code)
