"""Who hears of a ticket change, and how: the pure mapping from each accepted change to the
exact notification activity inputs, and the inputs of the notification activity (`notify_change`).

The workflow-safe `send_all` that runs them is `workflows.ticket_notify`.

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
Managers' escalation emails need a lookup of who the managers are: the SLA part does it
(`workflows.ticket_sla_notify.announce`), which is why the workflow passes ``skip=NOTIFIED_BY_SLA``.

Keys: every input derives from the change's request id, so a retried activity, a replayed
workflow or a second `send_all` of the same change produces the same keys: an email's
`NotifyInput.event_key` is the request id (the send-once claim is kind + ticket + key +
recipient); a push's `event_id` is ``<ticket id>:<request id>`` (clients drop a repeat),
the same id the SLA part uses for its escalation push.

Actors: `ChangeEvent.changes` may carry ``actor_id`` (the reopen event does; a comment's
``author_id`` counts as its actor): nobody is emailed about their own change.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.notifications import NotificationKind
from models.enums import Priority, TicketStatus


class PushEvent(StrEnum):
    """Socket.IO event names (`helpdesk.push` publishes them to the rooms it picks)."""

    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    TICKET_STATUS_CHANGED = "ticket.status_changed"
    TICKET_ASSIGNED = "ticket.assigned"
    TICKET_ESCALATED = "ticket.escalated"
    COMMENT_ADDED = "comment.added"
    SLA_WARNING = "sla.warning"
    SLA_BREACH = "sla.breach"
    ATTACHMENT_BLOCKED = "attachment.blocked"
    ATTACHMENT_READY = "attachment.ready"
    SATISFACTION_ANSWERED = "ticket.satisfaction"  # to the ticket's staff room


class NotifyInput(BaseModel):
    """One email to one person about one ticket event. No PHI: ids and states."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: NotificationKind
    # Unique per event within the ticket, decided by the workflow (e.g. "status:7"), so a
    # retried activity or a replayed workflow produces the same notification key.
    event_key: str = Field(min_length=1, max_length=100)
    recipient_id: uuid.UUID
    ticket_id: uuid.UUID
    status: TicketStatus | None = None
    previous_status: TicketStatus | None = None
    priority: Priority | None = None
    escalation_level: int | None = Field(None, ge=0)
    sla_clock: Literal["first_response", "resolution"] | None = None

    @property
    def notification_key(self) -> str:
        return f"email:{self.kind.value}:{self.ticket_id}:{self.event_key}:{self.recipient_id}"


class NotifyResult(BaseModel):
    # sent: handed to the provider; duplicate: an earlier attempt claimed it; skipped: the
    # recipient or ticket is gone or inactive; uncertain: the connection broke after the
    # hand-over, the claim is kept and nothing is re-sent.
    outcome: Literal["sent", "duplicate", "skipped", "uncertain"]


class PushInput(BaseModel):
    """One ticket event for Socket.IO. The activity adds number, requester and assignee
    from the database and picks the rooms (`helpdesk.push.rooms_for`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: PushEvent
    event_id: str = Field(min_length=1, max_length=200)
    ticket_id: uuid.UUID
    status: TicketStatus | None = None
    previous_status: TicketStatus | None = None
    priority: Priority | None = None
    assignee_id: uuid.UUID | None = None
    escalation_level: int | None = None
    escalated_to: uuid.UUID | None = None
    comment_id: uuid.UUID | None = None
    internal: bool = False
    sla_clock: Literal["first_response", "resolution"] | None = None
    # Attachment verdicts (attachment.blocked / attachment.ready): which file, and who
    # uploaded it (a room, never put in the payload).
    attachment_id: uuid.UUID | None = None
    uploader_id: uuid.UUID | None = None


class NotifyBatch(BaseModel):
    """Every email and push of one change, for one `notify_change` activity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emails: list[NotifyInput] = Field(default_factory=list)
    pushes: list[PushInput] = Field(default_factory=list)


Notification = NotifyInput | PushInput

# Changes whose notifications the SLA part already sends (escalation: emails to the
# managers it looks up, and the push), passed as `skip=` by the ticket workflow.
NOTIFIED_BY_SLA: frozenset[str] = frozenset({"escalated"})
CREATED = "created"


class ChangeLike(Protocol):
    """What the mapping reads of a change (helpdesk.rules.contracts.ChangeEvent)."""

    @property
    def action(self) -> str: ...

    @property
    def request_id(self) -> str: ...

    @property
    def changes(self) -> dict[str, Any]: ...


class TicketLike(Protocol):
    """What the mapping reads of the ticket's state (helpdesk.rules.contracts.TicketState)."""

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
