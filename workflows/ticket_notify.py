"""Who hears of a ticket change, and how: the pure mapping from each accepted change to the
exact notification activity inputs, and the workflow-safe `send_all` that runs them.

`notifications_for(event, state)` is pure (tests call it directly). Each change
(`ChangeEvent.action`) → emails (`NotifyInput`) + push (`PushInput`), all sent by ONE
`notify_change` activity:

- ``created``: ticket_created → the requester; ticket_assigned → the assignee if it was
  auto-assigned; push ``ticket.created``.
- ``assigned``: ticket_assigned → the new assignee (unless they took it themselves); push
  ``ticket.assigned``.
- ``status_changed``: status_changed → the requester, or → the assignee when the requester
  made the change (closed, reopened, replied on a RESOLVED ticket); push
  ``ticket.status_changed``.
- ``edited``: no email; push ``ticket.updated``.
- ``comment_added``, public: public_reply → the other party (the requester when staff
  wrote; the assignee when the requester wrote); push ``comment.added`` (internal: false).
- ``comment_added``, internal: NO email to anybody; push ``comment.added`` (internal: true).
- ``escalated``: escalated → the person escalated to; push ``ticket.escalated``.

Rooms are not chosen here: the push asks `helpdesk.push.rooms_for`, which sends an
internal note's event to ``ticket:<id>:staff``, the assignee's and the ``agents`` rooms only
(never ``ticket:<id>`` nor the requester's room), and escalations to staff and managers.
Managers' escalation emails need a lookup of who the managers are: the SLA mixin does it
(`TicketSlaMixin._sla_notify`), which is why the workflow passes ``skip=NOTIFIED_BY_SLA``.

Keys: every input derives from the change's request id, so a retried activity, a replayed
workflow or a second `send_all` of the same change produces the same keys: an email's
`NotifyInput.event_key` is the request id (the send-once claim is kind + ticket + key +
recipient); a push's `event_id` is ``<ticket id>:<request id>`` (clients drop a repeat),
the same id the SLA mixin uses for its escalation push.

Actors: `ChangeEvent.changes` may carry ``actor_id`` (the reopen event does; a comment's
``author_id`` counts as its actor): nobody is emailed about their own change.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import (
        NotificationActivities,
        NotifyBatch,
        NotifyInput,
        PushInput,
    )
    from helpdesk.notifications import NotificationKind
    from helpdesk.push import PushEvent
    from models.enums import Priority, TicketStatus
    from workflows.ticket_types import ChangeEvent

Notification = NotifyInput | PushInput

# Changes whose notifications the SLA mixin already sends (escalation: emails to the
# managers it looks up, and the push), passed as `skip=` by the ticket workflow.
NOTIFIED_BY_SLA: frozenset[str] = frozenset({"escalated"})
# A change's notifications run as ONE activity (`notify_change`), not one per email and push,
# and as a LOCAL activity first, inside the workflow task already running (no activity task,
# no second workflow task: a new ticket costs the Temporal server one workflow task, as a
# trivial workflow does); a failed local attempt falls back to the regular activity.
# How long the local attempt may take: as long as one attempt of the activity (a cut-off
# send keeps its claim, at most once, so a shorter limit would lose slow providers' mail).
# A local activity running past ~8 s makes the SDK complete the workflow task anyway (its
# heartbeat), so the creation answers by then.
LOCAL_NOTIFY_TIMEOUT = timedelta(seconds=30)
CREATED = "created"


class ChangeLike(Protocol):
    """What the mapping reads of a change (workflows.ticket_types.ChangeEvent)."""

    @property
    def action(self) -> str: ...

    @property
    def request_id(self) -> str: ...

    @property
    def changes(self) -> dict[str, Any]: ...


class TicketLike(Protocol):
    """What the mapping reads of the ticket's state (workflows.ticket_types.TicketState)."""

    @property
    def ticket_id(self) -> uuid.UUID: ...

    @property
    def requester_id(self) -> uuid.UUID: ...

    @property
    def assignee_id(self) -> uuid.UUID | None: ...

    @property
    def status(self) -> Any: ...

    @property
    def priority(self) -> str: ...

    @property
    def escalation_level(self) -> int: ...


def created_event() -> ChangeEvent:
    """The change a ticket's first workflow run announces (its row was written by the API)."""
    return ChangeEvent(action=CREATED, request_id=CREATED)


def creation_events() -> list[ChangeEvent]:
    """Workflow code, at the start of `run`: the `created` change to announce, on the first
    run of a ticket only (a continued run does not announce it again)."""
    if workflow.info().continued_run_id is not None:
        return []
    return [created_event()]


# --- the pure mapping --------------------------------------------------------------------


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _new(changes: Mapping[str, Any], name: str) -> Any:
    """The new value of a field in `changes` (``{"old":..,"new":..}`` or a bare value)."""
    value = changes.get(name)
    return value.get("new") if isinstance(value, dict) else value


def _status(value: Any) -> TicketStatus | None:
    if value is None:
        return None
    try:
        return TicketStatus(str(getattr(value, "value", value)))
    except ValueError:
        return None


def _priority(value: Any) -> Priority | None:
    try:
        return Priority(str(value)) if value is not None else None
    except ValueError:
        return None


def notifications_for(
    event: ChangeLike, state: TicketLike, *, skip: Collection[str] = ()
) -> list[Notification]:
    """The emails and pushes one accepted change causes, in sending order (see the module
    docstring for the table). Pure: the same change and state give equal inputs."""
    if event.action in skip:
        return []
    changes = event.changes or {}
    ticket_id = state.ticket_id
    key = event.request_id[:100]
    push_id = f"{ticket_id}:{event.request_id}"[:200]
    # Who made the change, when it says (a comment's author is its actor).
    actor = _uuid(changes.get("actor_id")) or _uuid(changes.get("author_id"))
    status = _status(state.status)
    priority = _priority(state.priority)
    out: list[Notification] = []

    def email(kind: NotificationKind, recipient: uuid.UUID | None, **facts: Any) -> None:
        # Nobody is told about their own change; each person once per change.
        if recipient is None or recipient == actor:
            return
        if any(isinstance(n, NotifyInput) and n.recipient_id == recipient for n in out):
            return
        out.append(
            NotifyInput(
                kind=kind, event_key=key, recipient_id=recipient, ticket_id=ticket_id, **facts
            )
        )

    def push(kind: PushEvent, **facts: Any) -> None:
        out.append(PushInput(event=kind, event_id=push_id, ticket_id=ticket_id, **facts))

    match event.action:
        case "created":
            email(
                NotificationKind.TICKET_CREATED,
                state.requester_id,
                status=status,
                priority=priority,
            )
            email(NotificationKind.TICKET_ASSIGNED, state.assignee_id, priority=priority)
            push(
                PushEvent.TICKET_CREATED,
                status=status,
                priority=priority,
                assignee_id=state.assignee_id,
            )
        case "assigned":
            assignee = _uuid(_new(changes, "assignee_id"))
            email(NotificationKind.TICKET_ASSIGNED, assignee, priority=priority)
            push(PushEvent.TICKET_ASSIGNED, assignee_id=assignee)
        case "status_changed":
            new = _status(_new(changes, "status")) or status
            old_value = changes.get("status")
            old = _status(old_value.get("old")) if isinstance(old_value, dict) else None
            if actor is not None and actor == state.requester_id:
                # The requester closed or reopened it (or replied on a RESOLVED ticket):
                # the agent working it is the one to tell.
                email(
                    NotificationKind.STATUS_CHANGED,
                    state.assignee_id,
                    status=new,
                    previous_status=old,
                )
            else:
                email(
                    NotificationKind.STATUS_CHANGED,
                    state.requester_id,
                    status=new,
                    previous_status=old,
                )
            push(PushEvent.TICKET_STATUS_CHANGED, status=new, previous_status=old)
        case "edited":
            push(PushEvent.TICKET_UPDATED, priority=priority)
        case "comment_added":
            comment_id = _uuid(changes.get("comment_id"))
            author = actor
            if changes.get("internal") is not False:
                # An internal note (or a change that does not say it is public): staff
                # rooms only, no email to anybody.
                push(PushEvent.COMMENT_ADDED, comment_id=comment_id, internal=True)
                return out
            other = state.assignee_id if author == state.requester_id else state.requester_id
            if other != author:
                email(NotificationKind.PUBLIC_REPLY, other)
            push(PushEvent.COMMENT_ADDED, comment_id=comment_id, internal=False)
        case "escalated":
            escalated_to = _uuid(_new(changes, "escalated_to"))
            level = _new(changes, "escalation_level")
            level = level if isinstance(level, int) else state.escalation_level
            email(NotificationKind.ESCALATED, escalated_to, escalation_level=level)
            push(PushEvent.TICKET_ESCALATED, escalation_level=level, escalated_to=escalated_to)
        case _:
            pass
    return out


# --- sending, from the workflow's main loop ----------------------------------------------

# Short: a notification that cannot go out soon is not worth holding the ticket's main loop
# (and its SLA timers) for. A permanent refusal (bad address) is not retried at all.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["EmailPermanentError"],
)
PUSH_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=3,
)


async def send_all(notifications: Sequence[Notification]) -> list[str]:
    """Run the notification activity of one change from workflow code: ONE local attempt
    first (`send_batch_local`), the regular activity with its retries if that failed.

    Returns one outcome per input (``sent``/``duplicate``/``skipped``/``uncertain`` for an
    email, ``pushed`` for a push, ``failed`` when the activity gave up). Never raises for a
    failed notification: an undeliverable email or an unreachable Socket.IO fan-out must not
    fail the ticket (or the attachment scan)."""
    if not notifications:
        return []
    outcomes = await send_batch_local(notifications)
    if outcomes is not None:
        return outcomes
    return await send_batch(notifications)


def _batch(notifications: Sequence[Notification]) -> tuple[NotifyBatch, list[str], list[int]]:
    """The activity input for one change, its kinds (for the summary) and the inputs' ids
    in the order the activity answers (pushes, then emails)."""
    pushes = [n for n in notifications if isinstance(n, PushInput)]
    emails = [n for n in notifications if isinstance(n, NotifyInput)]
    kinds = sorted({n.kind.value for n in emails} | {n.event.value for n in pushes})
    return NotifyBatch(emails=emails, pushes=pushes), kinds, [id(n) for n in pushes + emails]


def _in_input_order(
    notifications: Sequence[Notification], order: list[int], outcomes: list[str]
) -> list[str]:
    by_input = dict(zip(order, outcomes, strict=False))
    return [by_input.get(id(n), "failed") for n in notifications]


async def send_batch_local(notifications: Sequence[Notification]) -> list[str] | None:
    """`send_batch` as ONE local activity attempt (bounded by LOCAL_NOTIFY_TIMEOUT), run by
    this worker inside the current workflow task. None when it did not succeed: the caller
    then runs the regular activity, which retries (what already went out answers
    ``duplicate``; a repeated push carries the same event id)."""
    batch, kinds, order = _batch(notifications)
    try:
        outcomes: list[str] = await workflow.execute_local_activity_method(
            NotificationActivities.notify_change,
            batch,
            start_to_close_timeout=LOCAL_NOTIFY_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
            summary="Notify: " + ", ".join(kinds),
        )
    except CancelledError:
        raise
    except FailureError as err:
        # A local activity's failure may arrive unwrapped (the activity's own error, or a
        # timeout), not as an ActivityError.
        cause = err.cause if isinstance(err, ActivityError) else err
        reason = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            workflow.logger.warning("notifications %s not delivered: %s", kinds, reason)
            return ["failed"] * len(notifications)
        workflow.logger.info("local notification attempt failed (%s); retrying", reason)
        return None
    return _in_input_order(notifications, order, outcomes)


async def send_batch(notifications: Sequence[Notification]) -> list[str]:
    """All of one change's notifications in one `notify_change` activity. Outcomes in
    input order; never raises."""
    batch, kinds, order = _batch(notifications)
    try:
        outcomes: list[str] = await workflow.execute_activity_method(
            NotificationActivities.notify_change,
            batch,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=2),
            retry_policy=EMAIL_RETRY,
            summary="Notify: " + ", ".join(kinds),
        )
    except ActivityError as err:
        cause = err.cause
        reason = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        workflow.logger.warning("notifications %s not delivered: %s", kinds, reason)
        return ["failed"] * len(notifications)
    return _in_input_order(notifications, order, outcomes)
