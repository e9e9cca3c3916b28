"""A ticket's workflow from the API side: its input, start operation and search
attributes, and the calls that reach it (update, update-with-start, query) with their
retries and the domain errors they map to. By contract names only
(`helpdesk.rules.contracts`): no workflow code is imported."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
from helpdesk.deadline import command_deadline
from helpdesk.rules.contracts import (
    TICKET_STATE_QUERY,
    TICKET_WORKFLOW,
    Failure,
    OpenRequest,
    SealedTicket,
    TicketCommand,
    TicketConfig,
    TicketInput,
    TicketState,
)
from helpdesk.rules.sla import SlaState
from helpdesk.rules.transitions import Status
from helpdesk.runtime import Runtime
from helpdesk.services.sla_resume import resumed_sla
from helpdesk.services.tickets import LIVE_STATUSES
from helpdesk.temporal import (
    ASSIGNED_AGENT,
    ESCALATED,
    TICKET_PRIORITY,
    TICKET_STATUS,
    ticket_workflow_id,
)
from models.enums import TicketStatus
from models.ticket import Ticket

T = TypeVar("T")

log = logging.getLogger("helpdesk.tickets")

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


def client_of(runtime: Runtime) -> Client:
    if runtime.temporal is None:
        raise errors.Unavailable("the workflow engine is not connected", retry_after=5)
    client: Client = runtime.temporal
    return client


async def with_retries(runtime: Runtime, call: Callable[[], Awaitable[T]]) -> T:
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
        case Failure.INVALID_TRANSITION:
            return errors.InvalidTransition(message, details=details)
        case "TransitionNotPermitted" | Failure.PERMISSION_DENIED:
            return errors.PermissionDenied(message, details=details)
        case Failure.TICKET_GONE:
            return errors.Gone("this ticket was deleted")
        case Failure.NO_AGENT_AVAILABLE:
            return errors.Conflict(message, details=details)
        case Failure.VALIDATION_FAILED | Failure.AGENT_NOT_ASSIGNABLE:
            return errors.ValidationFailed(message, details=details)
        case _:
            return errors.Unavailable("the change could not be applied; retry", retry_after=2)


async def create_workflow(runtime: Runtime, new: SealedTicket) -> TicketState | None:
    """Start a new ticket's workflow, which writes the row first, and wait until it has
    (update-with-start, USE_EXISTING: a retry reaches the same workflow). None when a
    completed run already holds the ticket's id."""
    requester_id = new.requester.id
    assert requester_id is not None
    state = TicketState(
        ticket_id=new.ticket_id,
        number=new.number,
        requester_id=requester_id,
        priority=new.priority,
        category_id=new.category_id,
        due_date=new.due_date,
    )
    return await _open(runtime, TicketInput(state=state, config=ticket_config(runtime), new=new))


async def ensure_workflow(runtime: Runtime, ticket: Ticket) -> TicketState | None:
    """Start the workflow of a ticket row if it does not run (update-with-start,
    USE_EXISTING) and wait until it answers. Its SLA clocks resume from the database
    (`helpdesk.services.sla_resume`), never from now. None when the ticket's workflow has
    completed (closed)."""
    sla = None
    if ticket.status in LIVE_STATUSES:
        async with runtime.database.read() as session:
            sla = await resumed_sla(session, runtime.settings, ticket)
    return await _open(runtime, workflow_input(ticket, ticket_config(runtime), sla))


async def _open(runtime: Runtime, inp: TicketInput) -> TicketState | None:
    client = client_of(runtime)
    ticket_id = inp.state.ticket_id

    async def call() -> TicketState:
        state: TicketState = await client.execute_update_with_start_workflow(
            TicketCommand.OPENED.value,
            OpenRequest(request_id=f"open-{ticket_id}"),
            start_workflow_operation=start_operation(runtime, inp),
            result_type=TicketState,
        )
        return state

    try:
        return await with_retries(runtime, call)
    except WorkflowAlreadyStartedError:
        return None  # a completed run exists: the ticket is closed or gone
    except WorkflowUpdateFailedError as err:
        raise domain_error(err) from None


async def send_update(
    runtime: Runtime, ticket_id: uuid.UUID, update: TicketCommand, request: Any
) -> TicketState:
    """Send a ticket's workflow an update and return the state it answers with."""
    client = client_of(runtime)
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
            state = await with_retries(runtime, call)
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
            # No running workflow: closed, deleted, or lost (a restore of the database
            # without Temporal's). Decide from the row.
            async with runtime.database.read() as session:
                ticket = await session.get(Ticket, ticket_id)
            if ticket is None or ticket.deleted_at is not None:
                raise errors.Gone("this ticket was deleted") from None
            if ticket.status == TicketStatus.CLOSED.value:
                raise errors.InvalidTransition(
                    "the ticket is closed", details={"current": "CLOSED", "allowed": []}
                ) from None
            if await ensure_workflow(runtime, ticket) is None:
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
