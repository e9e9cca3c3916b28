"""Ticket activities: thin, idempotent adapters from the workflow to the services.

`persist_change` writes one accepted change (ticket row + history entry + audit row) in ONE
transaction; the history entry's unique (ticket, event key) makes a retried activity a
no-op that answers like the first run.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from helpdesk import errors
from helpdesk.context import RequestContext, set_context
from helpdesk.runtime import Runtime
from helpdesk.services import tickets
from workflows.ticket_types import PersistChange, PersistResult

# Domain errors that no retry can fix, by the ApplicationError type the workflow sees.
_NON_RETRYABLE: tuple[tuple[type[errors.DomainError], str], ...] = (
    (errors.Gone, "TicketGone"),
    (errors.NotFound, "TicketGone"),
    (tickets.NoAgentAvailable, "NoAgentAvailable"),
    (tickets.AgentNotAssignable, "AgentNotAssignable"),
    (errors.ValidationFailed, "ValidationFailed"),
)


class TicketActivities:
    """Activities of the ticket workflow, around the process's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name="persist_ticket_change")
    async def persist_change(self, change: PersistChange) -> PersistResult:
        """Write one accepted change once (row, history entry, audit row)."""
        actor = change.actor
        # The audit row names the person and request behind the change, not the worker.
        set_context(
            RequestContext(
                request_id=(actor.http_request_id or change.event_key)[:64],
                ip=actor.ip,
                user_agent=actor.user_agent,
                actor_id=actor.id,
                actor_role=actor.role,
            )
        )
        try:
            async with self.runtime.database.transaction() as session:
                return await tickets.apply_change(session, self.runtime, change)
        except errors.DomainError as exc:
            for kind, type_ in _NON_RETRYABLE:
                if isinstance(exc, kind):
                    raise ApplicationError(
                        exc.message, exc.details, type=type_, non_retryable=True
                    ) from None
            raise
