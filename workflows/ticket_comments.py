"""Comments in the ticket workflow: the `add_comment` update, and the pure decision it runs.

How a comment travels (no comment text ever enters workflow history):

1. The API (`helpdesk.services.comments.add`) seals the body under the ticket's data key,
   commits the `comments` row, then sends the ticket's workflow the update
   ``add_comment(CommentAdded{request_id, comment_id, author_id, author_role, is_internal})``.
2. The handler (`TicketWorkflow.add_comment`, which calls `Comments.add`) deduplicates the
   request id, checks the ticket is live, decides with `on_comment` (pure), records the
   timeline entry with ONE activity (`record_ticket_comment`, in `activities.comments`:
   history + audit, idempotent on the request id), and appends a
   `ChangeEvent("comment_added")` to the outbox, which the SLA part reads (a public staff
   reply fulfils first response).
3. A requester's public reply on a RESOLVED ticket reopens it (when the
   ``reopen_on_requester_reply`` setting is on): a second change, `status_changed`
   RESOLVED → OPEN with the event key ``<request id>:reopen``, written by the ticket's own
   `persist_ticket_change` activity, so the SLA clocks resume exactly as for a manual reopen.
4. The main loop's `_after_change` sends the notifications (`workflows.ticket_notify`).

`Comments` is composed into the workflow (`Comments(workflow)`) and reaches it only through
the members `workflows.ticket_host.TicketHost` names.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.activity_contracts import COMMENT_ADDED, ActivityName, CommentRecord
    from helpdesk.rules.contracts import (
        SYSTEM_ROLE,
        Actor,
        CommentAdded,
        Failure,
        FieldUpdates,
        TicketCommand,
        TicketState,
    )
    from helpdesk.rules.sla_policy import SlaClockKind
    from helpdesk.rules.transitions import STAFF, Status

if TYPE_CHECKING:
    from workflows.ticket_host import TicketHost

# The update's name (the API sends it by name: `helpdesk.services.comments`).
ADD_COMMENT = TicketCommand.ADD_COMMENT.value
REOPEN_REASON = "requester_reply"


# --- the pure decision -------------------------------------------------------------------


class CommentedTicket(Protocol):
    """What `on_comment` reads of the ticket's state (TicketState satisfies it)."""

    @property
    def requester_id(self) -> uuid.UUID: ...

    @property
    def status(self) -> Status: ...


class CommentRules(Protocol):
    """The setting `on_comment` follows (Settings and CommentAdded both carry it)."""

    @property
    def reopen_on_requester_reply(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class CommentEffects:
    """What an accepted comment does to the ticket."""

    internal: bool
    # A public reply by staff (not the requester themself, not the system) while the
    # first-response clock is still pending: it fulfils first response.
    first_response: bool
    # A public reply by the requester on a RESOLVED ticket, with the setting on.
    reopen: bool
    # The public side hears of it (email to the other party, push to the ticket room);
    # an internal note reaches staff rooms only.
    visible_to_requester: bool
    # The ChangeEvent/history changes of `comment_added` (ids and flags, no text).
    changes: dict[str, Any] = field(default_factory=dict)


def first_response_pending(state: object) -> bool:
    """Whether the ticket still waits for its first response. A state without SLA clocks
    (no policy) counts as pending: the activity sets `first_response_at` once anyway."""
    sla = getattr(state, "sla", None)
    if sla is None:
        return True
    clock = sla.clocks.get(SlaClockKind.FIRST_RESPONSE)
    return clock is None or clock.phase not in ("fulfilled", "stopped")


def on_comment(state: CommentedTicket, event: CommentAdded, rules: CommentRules) -> CommentEffects:
    """Decide what a comment does: first response, reopen, who may hear of it.

    - An internal note changes nothing for the requester: no first response, no reopen.
    - A public reply by staff (SUPPORT_AGENT, MANAGER, ADMINISTRATOR; not SYSTEM) who is not
      the ticket's requester fulfils first response while that clock is pending.
    - A public reply by the requester on a RESOLVED ticket reopens it when
      `rules.reopen_on_requester_reply` is on.
    """
    internal = event.is_internal
    by_requester = event.author_id == state.requester_id
    by_staff = event.author_role in STAFF and event.author_role != SYSTEM_ROLE
    first_response = (
        not internal and by_staff and not by_requester and first_response_pending(state)
    )
    reopen = (
        not internal
        and by_requester
        and state.status is Status.RESOLVED
        and rules.reopen_on_requester_reply
    )
    changes: dict[str, Any] = {
        "comment_id": str(event.comment_id),
        "author_id": str(event.author_id),
        "author_role": event.author_role,
        "internal": internal,
        "first_response": first_response,
    }
    return CommentEffects(
        internal=internal,
        first_response=first_response,
        reopen=reopen,
        visible_to_requester=not internal,
        changes=changes,
    )


def reopen_key(request_id: str) -> str:
    """Event key of the reopen a requester's reply causes (its own history entry)."""
    return f"{request_id}:reopen"


def refusal(event: CommentAdded, state: TicketState) -> ApplicationError | None:
    """Why the workflow refuses a comment (shared by the validator and the handler), or
    None. The API checked the same before writing the row; this is the workflow's word."""
    if state.gone:
        return ApplicationError(
            "the ticket was deleted", type=Failure.TICKET_GONE, non_retryable=True
        )
    if state.status is Status.CLOSED:
        return ApplicationError(
            "the ticket is closed",
            {"current": Status.CLOSED.value, "allowed": []},
            type=Failure.INVALID_TRANSITION,
            non_retryable=True,
        )
    by_staff = event.author_role in STAFF and event.author_role != SYSTEM_ROLE
    if event.is_internal and not by_staff:
        return ApplicationError(
            "only staff write internal notes", type=Failure.PERMISSION_DENIED, non_retryable=True
        )
    if not by_staff and event.author_id != state.requester_id:
        return ApplicationError(
            "you may not comment on this ticket", type=Failure.PERMISSION_DENIED, non_retryable=True
        )
    return None


# --- the update handler ------------------------------------------------------------------


_RECORD_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[Failure.TICKET_GONE, Failure.VALIDATION_FAILED],
)


class Comments:
    """The comment part of TicketWorkflow (see the module docstring), composed into it."""

    def __init__(self, host: TicketHost) -> None:
        self.host = host

    async def add(self, event: CommentAdded) -> TicketState:
        """The `add_comment` update's handler."""
        async with self.host.lock:
            if self.host.seen(event.request_id):
                return self.host.answer()
            problem = refusal(event, self.host.ticket)
            if problem is not None:
                raise problem
            effects = on_comment(self.host.ticket, event, event)
            actor = event.actor()
            await self._record_comment(event, effects, actor)
            self.host.accepted(event.request_id, COMMENT_ADDED, dict(effects.changes))
            if effects.reopen:
                key = reopen_key(event.request_id)
                changes = {
                    "status": {"old": Status.RESOLVED.value, "new": Status.OPEN.value},
                    "reason": REOPEN_REASON,
                }
                await self.host.persist(
                    key,
                    actor,
                    "status_changed",
                    FieldUpdates(fields=["status"], status=Status.OPEN),
                    changes,
                    summary="Reopen: the requester replied",
                )
                self.host.ticket.status = Status.OPEN
                self.host.accepted(key, "status_changed", {**changes, "actor_id": str(actor.id)})
            return self.host.answer()

    def validate(self, event: CommentAdded) -> None:
        """The `add_comment` update's validator."""
        if self.host.seen(event.request_id):
            return
        problem = refusal(event, self.host.ticket)
        if problem is not None:
            raise problem

    async def _record_comment(
        self, event: CommentAdded, effects: CommentEffects, actor: Actor
    ) -> None:
        record = CommentRecord(
            ticket_id=self.host.ticket.ticket_id,
            event_key=event.request_id,
            comment_id=event.comment_id,
            actor=actor,
            internal=effects.internal,
            first_response=effects.first_response,
            version=self.host.ticket.version + 1,
        )
        try:
            await workflow.execute_activity(
                ActivityName.RECORD_TICKET_COMMENT,
                record,
                start_to_close_timeout=timedelta(seconds=self.host.config.activity_timeout_seconds),
                retry_policy=_RECORD_RETRY,
                summary="Internal note" if effects.internal else "Public reply",
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type:
                if cause.type == Failure.TICKET_GONE:
                    self.host.ticket.gone = True
                raise ApplicationError(
                    cause.message, *cause.details, type=cause.type, non_retryable=True
                ) from None
            raise ApplicationError(
                "the comment could not be recorded", type=Failure.PERSIST_FAILED, non_retryable=True
            ) from None
