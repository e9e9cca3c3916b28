"""The notices of SLA events and escalations, composed into the SLA side of the ticket
workflow (`workflows.ticket_sla`): who to tell (looked up when the event fires), the
emails and the push as ONE notification batch (`send_all`: a local attempt first). A
notice that cannot be sent is logged; it never fails the ticket."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from helpdesk.notifications import NotificationKind
    from helpdesk.rules.activity_contracts import ActivityName, RecipientsQuery
    from helpdesk.rules.contracts import Failure, TicketState
    from helpdesk.rules.notify import NotifyInput, PushEvent, PushInput
    from helpdesk.rules.sla_policy import SlaClockKind
    from workflows import local_first
    from workflows.ticket_notify import send_all

ClockName = Literal["first_response", "resolution"]
_CLOCK_NAMES: dict[SlaClockKind, ClockName] = {
    SlaClockKind.FIRST_RESPONSE: "first_response",
    SlaClockKind.RESOLUTION: "resolution",
}
_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=10), non_retryable_error_types=[Failure.TICKET_GONE]
)


def clock_name(kind: SlaClockKind | None) -> ClockName | None:
    return _CLOCK_NAMES[kind] if kind is not None else None


def _error_type(err: ActivityError) -> str:
    cause = err.cause
    return cause.type or "error" if isinstance(cause, ApplicationError) else type(cause).__name__


async def announce(
    ticket: TicketState,
    activity_timeout: timedelta,
    kind: NotificationKind,
    event_key: str,
    notify: Sequence[str],
    escalated_to: uuid.UUID | None,
    clock: ClockName | None,
    push: PushEvent,
) -> None:
    """The emails (to the people `notify` names, looked up now) and the push of one SLA
    event or escalation, as ONE notification batch."""
    recipients: list[uuid.UUID] = []
    if notify:
        recipients = await local_first.run(
            ActivityName.SLA_RECIPIENTS,
            RecipientsQuery(
                ticket_id=ticket.ticket_id, notify=list(notify), escalated_to=escalated_to
            ),
            start_to_close=activity_timeout,
            result_type=list[uuid.UUID],
            retry_policy=_RETRY,
            summary="Who to notify",
        )
    emails: list[NotifyInput | PushInput] = [
        NotifyInput(
            kind=kind,
            event_key=event_key[:100],
            recipient_id=recipient,
            ticket_id=ticket.ticket_id,
            escalation_level=ticket.escalation_level,
            sla_clock=clock,
        )
        for recipient in dict.fromkeys(recipients)
    ]
    await send_all([*emails, push_input(ticket, push, event_key, clock)])


def push_input(
    ticket: TicketState, event: PushEvent, event_id: str, clock: ClockName | None
) -> PushInput:
    return PushInput(
        event=event,
        event_id=f"{ticket.ticket_id}:{event_id}"[:200],
        ticket_id=ticket.ticket_id,
        escalation_level=ticket.escalation_level,
        sla_clock=clock,
    )


async def push(
    ticket: TicketState, event: PushEvent, event_id: str, clock: ClockName | None
) -> None:
    """One SLA push on its own (its record was written without it)."""
    try:
        await workflow.execute_activity(
            ActivityName.PUBLISH_EVENT,
            push_input(ticket, event, event_id, clock),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5),
            summary=f"Push {event.value}",
        )
    except ActivityError as err:
        workflow.logger.warning("SLA push not sent: %s", _error_type(err))
