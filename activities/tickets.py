"""Ticket activities: thin, idempotent adapters from the workflow to the services.

`persist_change` writes one accepted change (ticket row + history entry + audit row) in ONE
transaction; the history entry's unique (ticket, event key) makes a retried activity a
no-op that answers like the first run.
"""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.exceptions import ApplicationError

from helpdesk import errors
from helpdesk.context import RequestContext, set_context
from helpdesk.rules.contracts import ChangeEvent, PersistChange, PersistResult
from helpdesk.runtime import Runtime
from helpdesk.services import tickets
from models.ticket import Ticket

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
                result, row = await tickets.apply_change_to_row(session, self.runtime, change)
        except errors.DomainError as exc:
            for kind, type_ in _NON_RETRYABLE:
                if isinstance(exc, kind):
                    raise ApplicationError(
                        exc.message, exc.details, type=type_, non_retryable=True
                    ) from None
            raise
        if result.applied and row.status == "RESOLVED" and "status" in change.updates.fields:
            await self._send_survey(change)
        # Also on a retry that found the change written: the first attempt may have died
        # before its push, and clients drop a repeated event id.
        result.pushed = await self._push(change, result, row)
        return result

    async def _send_survey(self, change: PersistChange) -> None:
        """The satisfaction survey of this resolution, when it is due at once (no delay);
        after the commit, never failing the change (the reconcile loop retries)."""
        if self.runtime.settings.csat_survey_delay_seconds:
            return
        from helpdesk.services import satisfaction

        try:
            await satisfaction.send_due(self.runtime, ticket_id=change.ticket_id)
        except Exception as exc:  # the change is committed; the survey waits for a retry
            activity.logger.warning("survey not sent: %s", type(exc).__name__)

    async def _push(self, change: PersistChange, result: PersistResult, row: Ticket) -> bool:
        """The change's Socket.IO push, as the main loop would send it, published after the
        commit. False when it could not go out: the workflow's main loop then sends it."""
        from activities.notifications import PushInput, publish_for_row
        from helpdesk.rules.notify import NOTIFIED_BY_SLA, notifications_for

        changes = dict(change.changes)
        if change.action == "assigned":
            old = changes.get("assignee_id")
            old_value = old.get("old") if isinstance(old, dict) else None
            changes["assignee_id"] = {"old": old_value, "new": _s(result.assignee_id)}
        event = ChangeEvent(action=change.action, request_id=change.event_key, changes=changes)
        pushes = [
            item
            for item in notifications_for(event, _RowState(row), skip=NOTIFIED_BY_SLA)
            if isinstance(item, PushInput)
        ]
        return await publish_for_row(self.runtime, pushes, row)


class _RowState:
    """The ticket row as `notifications_for` reads a state (no PHI)."""

    def __init__(self, row: Ticket) -> None:
        self.ticket_id = row.id
        self.requester_id = row.requester_id
        self.assignee_id = row.assignee_id
        self.status = row.status
        self.priority = row.priority
        self.escalation_level = row.escalation_level


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
