"""Ticket activities: thin, idempotent adapters from the workflow to the services.

`create_ticket` writes a new ticket (its workflow's first step: the API writes no ticket
row) and then sends the creation's notifications. `persist_change` writes one accepted
change (ticket row + history entry + audit row) in ONE transaction; the history entry's
unique (ticket, event key) makes a retried activity a no-op that answers like the first
run. It also chooses the change's notifications, once, and publishes its push right after
the commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notifications import NotificationActivities, publish_for_row
from helpdesk import errors
from helpdesk.context import RequestContext, set_context
from helpdesk.rules.activity_contracts import ActivityName
from helpdesk.rules.contracts import (
    Actor,
    ChangeEvent,
    Failure,
    PersistChange,
    PersistResult,
    SealedTicket,
    TicketCreated,
)
from helpdesk.rules.notify import (
    CREATED,
    NOTIFIED_BY_SLA,
    NotifyBatch,
    NotifyInput,
    PushInput,
    notifications_for,
)
from helpdesk.runtime import Runtime
from helpdesk.services import satisfaction, tickets
from models.enums import TicketStatus
from models.ticket import Ticket

# Domain errors that no retry can fix, by the ApplicationError type the workflow sees.
_NON_RETRYABLE: tuple[tuple[type[errors.DomainError], str], ...] = (
    (errors.Gone, Failure.TICKET_GONE),
    (errors.NotFound, Failure.TICKET_GONE),
    (tickets.NoAgentAvailable, Failure.NO_AGENT_AVAILABLE),
    (tickets.AgentNotAssignable, Failure.AGENT_NOT_ASSIGNABLE),
    (errors.ValidationFailed, Failure.VALIDATION_FAILED),
)


class TicketActivities:
    """Activities of the ticket workflow, around the process's Runtime."""

    def __init__(self, runtime: Runtime, notifier: NotificationActivities | None = None) -> None:
        self.runtime = runtime
        self.notifier = notifier or NotificationActivities(runtime)

    @activity.defn(name=ActivityName.CREATE_TICKET)
    async def create_ticket(self, new: SealedTicket) -> TicketCreated:
        """Write a new ticket once (row, tokens, history entry, audit row), then send its
        creation's notifications (`notified` says whether they all went out)."""
        _act_for(new.requester, f"create-{new.ticket_id}")
        database = self.runtime.database
        with _domain_failures():
            try:
                # No look-up first: nearly every attempt is the first.
                async with database.transaction(inline=True) as session:
                    created, row = await tickets.create_row(session, self.runtime, new, check=False)
            except IntegrityError:
                # An earlier attempt wrote it (its commit outlived its answer).
                async with database.read() as session:
                    found = await tickets.written_row(session, self.runtime, new.ticket_id)
                if found is None:
                    raise
                created, row = found, None
        created.notified = await self._notify_created(new, created, row)
        return created

    async def _notify_created(
        self, new: SealedTicket, created: TicketCreated, row: Ticket | None
    ) -> bool:
        """The creation's emails and push (`helpdesk.rules.notify`: the same choice, keys
        and event id as the workflow's own), sent once the row is committed, in this
        activity rather than in a local activity of their own: one workflow activation,
        one marker and two encrypted payloads fewer per ticket. `notify_change` keeps its
        contract (each email at most once; an attempt that finds one sent answers
        ``duplicate``), so a retried creation, or the workflow sending them again when this
        returns False (a push that did not go out, a transient email error), sends
        nothing twice. Never raises: the ticket is written whatever happens here."""
        chosen = notifications_for(
            ChangeEvent(action=CREATED, request_id=CREATED), _NewState(new, created)
        )
        batch = NotifyBatch(
            emails=[n for n in chosen if isinstance(n, NotifyInput)],
            pushes=[n for n in chosen if isinstance(n, PushInput)],
        )
        try:
            # The row just committed is what notify_change would read back.
            outcomes = await self.notifier.notify(batch, rows=[row] if row is not None else None)
        except Exception as exc:  # a transient email error: the workflow's retries send it
            activity.logger.info(
                "creation notifications left to the workflow: %s", type(exc).__name__
            )
            return False
        # A push that failed is worth another try; an email refused for good is not.
        return "failed" not in outcomes[: len(batch.pushes)]

    @activity.defn(name=ActivityName.PERSIST_TICKET_CHANGE)
    async def persist_change(self, change: PersistChange) -> PersistResult:
        """Write one accepted change once (row, history entry, audit row)."""
        _act_for(change.actor, change.event_key)
        with _domain_failures():
            async with self.runtime.database.transaction(inline=True) as session:
                result, row = await tickets.apply_change_to_row(session, self.runtime, change)
        if result.applied and row.status == "RESOLVED" and "status" in change.updates.fields:
            await self._send_survey(change)
        # Chosen once, from the row as the change left it. Also on a retry that found the
        # change written: the first attempt may have died before its push, and clients
        # drop a repeated event id.
        result.notifications = await self._push(change, result, row)
        return result

    async def _send_survey(self, change: PersistChange) -> None:
        """The satisfaction survey of this resolution, when it is due at once (no delay);
        after the commit, never failing the change (the reconcile loop retries)."""
        if self.runtime.settings.csat_survey_delay_seconds:
            return
        try:
            await satisfaction.send_due(self.runtime, ticket_id=change.ticket_id)
        except Exception as exc:  # the change is committed; the survey waits for a retry
            activity.logger.warning("survey not sent: %s", type(exc).__name__)

    async def _push(self, change: PersistChange, result: PersistResult, row: Ticket) -> NotifyBatch:
        """The change's notifications: its pushes published now (after the commit), and
        what the workflow's main loop still sends (the emails; the pushes too when they
        could not go out)."""
        changes = dict(change.changes)
        if change.action == "status_changed" and change.actor.id is not None:
            # Who moved it decides who hears (a requester's reopen or close: the agent).
            changes.setdefault("actor_id", str(change.actor.id))
        if change.action == "assigned":
            old = changes.get("assignee_id")
            old_value = old.get("old") if isinstance(old, dict) else None
            changes["assignee_id"] = {"old": old_value, "new": _s(result.assignee_id)}
        event = ChangeEvent(action=change.action, request_id=change.event_key, changes=changes)
        chosen = notifications_for(event, _RowState(row), skip=NOTIFIED_BY_SLA)
        emails = [n for n in chosen if isinstance(n, NotifyInput)]
        pushes = [n for n in chosen if isinstance(n, PushInput)]
        if pushes and await publish_for_row(self.runtime, pushes, row):
            pushes = []
        return NotifyBatch(emails=emails, pushes=pushes)


def _act_for(actor: Actor, fallback_request_id: str) -> None:
    """The audit row names the person and request behind the write, not the worker."""
    set_context(
        RequestContext(
            request_id=(actor.http_request_id or fallback_request_id)[:64],
            ip=actor.ip,
            user_agent=actor.user_agent,
            actor_id=actor.id,
            actor_role=actor.role,
        )
    )


@contextlib.contextmanager
def _domain_failures() -> Iterator[None]:
    """A domain error no retry can fix, as the non-retryable failure the workflow maps."""
    try:
        yield
    except errors.DomainError as exc:
        for kind, type_ in _NON_RETRYABLE:
            if isinstance(exc, kind):
                raise ApplicationError(
                    exc.message, exc.details, type=type_, non_retryable=True
                ) from None
        raise


class _NewState:
    """A new ticket's state as `notifications_for` reads it, the same as its workflow's
    right after the create step (open, at escalation level 0)."""

    def __init__(self, new: SealedTicket, created: TicketCreated) -> None:
        assert new.requester.id is not None
        self.ticket_id = new.ticket_id
        self.requester_id = new.requester.id
        self.assignee_id = created.assignee_id
        self.status = TicketStatus.OPEN
        self.priority = new.priority
        self.escalation_level = 0


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
