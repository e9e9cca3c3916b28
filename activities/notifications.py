"""Notification activities: email a person about a ticket, push a ticket event to sockets.

Inputs carry ids and states only. The recipient's address is looked up and decrypted inside
the activity, so no address (and no ticket text) ever enters workflow history.

Send-once (``send_email``): **at most once**. Before calling the mail provider the activity
commits a claim, a `NotificationLog` row keyed by kind + workflow event key + recipient.

- The provider accepted the message: the claim stays and is the record that it was sent.
- The provider refused before taking the message (transient or permanent error): the claim
  is deleted in a second transaction, so a retry (transient) sends it again.
- The connection broke after the message was handed over (``maybe_delivered``), or the
  worker crashed or the activity was cancelled between the claim and the answer: the claim
  stays, so no retry re-sends. That notification may be lost, never duplicated; the change
  itself still shows on the portal and in the Socket.IO push. At-least-once would need the
  provider to deduplicate, which neither SMTP nor SendGrid does (the deterministic
  Message-ID only lets mail clients fold copies). An attempt that finds a claim answers
  ``duplicate``. (`NotificationLog` has no state column, so a claim whose send never
  finished looks like a sent one; a ``state`` of sending/sent would let operators list them.)

Errors: `EmailPermanentError` → non-retryable ``ApplicationError(type="EmailPermanentError")``;
`EmailTransientError` → retryable ``ApplicationError(type="EmailTransientError")`` (with the
provider's Retry-After as the next delay when it gave one). Give the activity a retry policy
with a maximum interval and a schedule-to-close timeout (e.g. 1 hour), and catch
``ActivityError`` around it in the workflow: an undeliverable email must not fail a ticket.

``publish_event`` pushes at least once: a retried push reaches a client twice with the same
``event_id``, which the client drops.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from helpdesk import metrics, push
from helpdesk.audit import AuditEntry
from helpdesk.email import EmailMessage, EmailPermanentError, EmailTransientError
from helpdesk.errors import DomainError
from helpdesk.notifications import TicketFacts, render_ticket_email
from helpdesk.rules.activity_contracts import ActivityName
from helpdesk.rules.notify import NotifyBatch as NotifyBatch
from helpdesk.rules.notify import NotifyInput as NotifyInput
from helpdesk.rules.notify import NotifyResult as NotifyResult
from helpdesk.rules.notify import PushInput as PushInput
from helpdesk.runtime import Runtime
from helpdesk.services import users
from models.ticket import NotificationLog, Ticket
from models.user import User

log = logging.getLogger("helpdesk.activities.notifications")

_CLAIMS = cast(Table, NotificationLog.__table__)
PERMANENT_EMAIL_ERROR = "EmailPermanentError"
TRANSIENT_EMAIL_ERROR = "EmailTransientError"
# A batch's email whose claim was released because an earlier one failed transiently.
NOT_ATTEMPTED = "NotAttempted"


class NotificationActivities:
    """Email and push activities around the process's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name=ActivityName.SEND_EMAIL)
    async def send_email(self, notify: NotifyInput) -> NotifyResult:
        """Email `notify.recipient_id` about a ticket event, at most once per key."""
        key = notify.notification_key
        claimed = await self._claim(notify, key)
        if isinstance(claimed, NotifyResult):
            return claimed
        address, number = claimed
        return NotifyResult(outcome=await self._deliver(notify, address, number))

    async def _deliver(
        self, notify: NotifyInput, address: str, number: int
    ) -> Literal["sent", "uncertain"]:
        """Render and hand over one claimed email: ``sent`` or ``uncertain``. A refusal
        releases the claim and raises the ApplicationError the module docstring names."""
        key = notify.notification_key
        facts = TicketFacts(
            ticket_id=notify.ticket_id,
            number=number,
            status=notify.status,
            previous_status=notify.previous_status,
            priority=notify.priority,
            escalation_level=notify.escalation_level,
            sla_clock=notify.sla_clock,
        )
        rendered = render_ticket_email(notify.kind, facts, self.runtime.settings)
        message = EmailMessage(
            to=address, subject=rendered.subject, body=rendered.body, message_key=key
        )
        try:
            await self.runtime.email.send(message)
        except EmailPermanentError as exc:
            metrics.EMAILS.labels(outcome="failed_permanent").inc()
            await self._release(notify, key, PERMANENT_EMAIL_ERROR)
            raise ApplicationError(
                str(exc), type=PERMANENT_EMAIL_ERROR, non_retryable=True
            ) from None
        except EmailTransientError as exc:
            metrics.EMAILS.labels(
                outcome="uncertain" if exc.maybe_delivered else "failed_transient"
            ).inc()
            if exc.maybe_delivered:
                log.warning("email %s: connection lost after hand-over; not resent", key)
                return "uncertain"
            await self._release(notify, key, TRANSIENT_EMAIL_ERROR)
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            raise ApplicationError(
                str(exc), type=TRANSIENT_EMAIL_ERROR, next_retry_delay=delay
            ) from None
        metrics.EMAILS.labels(outcome="sent").inc()
        return "sent"

    async def _claim(self, notify: NotifyInput, key: str) -> NotifyResult | tuple[str, int]:
        """Commit the send-once claim and return (address, ticket number), or the reason
        there is nothing to send."""
        runtime = self.runtime
        # Look-ups and decryption on a read snapshot, outside the database's write queue.
        async with runtime.database.read() as session:
            if await session.get(NotificationLog, key) is not None:
                return NotifyResult(outcome="duplicate")
            user = await session.get(User, notify.recipient_id)
            ticket = await session.get(Ticket, notify.ticket_id)
            if (
                user is None
                or not user.is_active
                or user.disposed_at is not None
                or ticket is None
                or ticket.deleted_at is not None
            ):
                return NotifyResult(outcome="skipped")
            try:
                address = (await users.view(session, runtime, user)).email
            except DomainError:  # the user's data key was shredded
                return NotifyResult(outcome="skipped")
            number = ticket.number
        # The claim itself: its primary key makes a concurrent attempt a duplicate.
        if not await self._claim_many([notify]):
            return NotifyResult(outcome="duplicate")
        return address, number

    async def _release(self, notify: NotifyInput, key: str, error_type: str) -> None:
        """Nothing was handed over: drop the claim so a retry may send, and audit why."""
        async with self.runtime.database.transaction() as session:
            await session.execute(delete(NotificationLog).where(NotificationLog.key == key))
            await self.runtime.audit.record(
                session,
                "notification.email",
                outcome="failure",
                table="users",
                record_id=notify.recipient_id,
                details={
                    "kind": notify.kind.value,
                    "ticket_id": str(notify.ticket_id),
                    "error": error_type,
                },
            )

    @activity.defn(name=ActivityName.NOTIFY_CHANGE)
    async def notify_change(self, batch: NotifyBatch) -> list[str]:
        """Every notification of one change in one activity (one task instead of one per
        email and push): pushes first, then each email at most once.

        Outcomes, pushes then emails in input order: ``pushed`` / ``failed`` for a push,
        ``sent`` / ``duplicate`` / ``skipped`` / ``uncertain`` / ``failed`` (a permanent
        refusal, not retried) for an email. A transient email error fails the activity so
        Temporal retries it: what already went out answers ``duplicate`` the second time
        (its claim stays), what was not attempted yet has its claim released, and a
        repeated push carries the same event id, which clients drop.

        The whole change costs one read snapshot (its ticket, the recipients and their
        keys) and one write transaction (every claim and its audit row), however many
        recipients it has; `send_email` is the same contract for one email."""
        return await self.notify(batch)

    async def notify(self, batch: NotifyBatch, *, rows: list[Ticket] | None = None) -> list[str]:
        """`notify_change`, given the ticket rows when the caller has just committed them
        (the create activity): they are not read again."""
        runtime = self.runtime
        ticket_ids = {e.ticket_id for e in batch.pushes} | {n.ticket_id for n in batch.emails}
        async with runtime.database.read() as session:
            if rows is None:
                rows = list(
                    (await session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids)))).all()
                )
            by_id = {t.id: t for t in rows if t.id in ticket_ids}
            plans = await self._plan_emails(session, batch.emails, by_id)
        outcomes: list[str] = []
        for event in batch.pushes:
            # Best-effort (logged): a failed push does not stop the emails. A deleted
            # ticket's event goes nowhere and counts as pushed, as `publish_event` does.
            row = by_id.get(event.ticket_id)
            if row is None or row.deleted_at is not None:
                outcomes.append("pushed")
                continue
            pushed = await publish_for_row(runtime, [event], row)
            outcomes.append("pushed" if pushed else "failed")
        to_send = [
            (notify, plan)
            for notify, plan in zip(batch.emails, plans, strict=True)
            if not isinstance(plan, str)
        ]
        if to_send and not await self._claim_many([notify for notify, _ in to_send]):
            # A concurrent attempt claimed one of them first: decide each on its own.
            for notify in batch.emails:
                outcomes.append(await self._send_one_of_batch(notify))
            return outcomes
        sent: dict[str, str] = {}
        for index, (notify, (address, number)) in enumerate(to_send):
            try:
                sent[notify.notification_key] = await self._deliver(notify, address, number)
            except ApplicationError as err:
                if err.type == PERMANENT_EMAIL_ERROR:
                    sent[notify.notification_key] = "failed"
                    continue
                # Transient: this one's claim was released; so are the ones not attempted
                # yet, so that the retry sends them.
                for later, _ in to_send[index + 1 :]:
                    await self._release(later, later.notification_key, NOT_ATTEMPTED)
                raise
        for notify, plan in zip(batch.emails, plans, strict=True):
            outcomes.append(plan if isinstance(plan, str) else sent[notify.notification_key])
        return outcomes

    async def _send_one_of_batch(self, notify: NotifyInput) -> str:
        try:
            return (await self.send_email(notify)).outcome
        except ApplicationError as err:
            if err.type != PERMANENT_EMAIL_ERROR:
                raise
            return "failed"

    async def _plan_emails(
        self, session: AsyncSession, emails: list[NotifyInput], tickets: dict[uuid.UUID, Ticket]
    ) -> list[tuple[str, int] | str]:
        """For each email, (address, ticket number) to send to, or ``skipped`` when there
        is nothing to send (the recipient or the ticket is gone or inactive, or the
        recipient's key was shredded). Earlier claims are not looked up here: the batch's
        claim transaction fails on one, and each email is then decided on its own
        (``duplicate``), as for a concurrent attempt; a first attempt reads nothing more."""
        if not emails:
            return []
        recipients = {n.recipient_id for n in emails}
        found = (await session.scalars(select(User).where(User.id.in_(recipients)))).all()
        live = [u for u in found if u.is_active and u.disposed_at is None]
        addresses = {v.id: v.email for v in await users.views(session, self.runtime, live)}
        plans: list[tuple[str, int] | str] = []
        for notify in emails:
            ticket = tickets.get(notify.ticket_id)
            address = addresses.get(notify.recipient_id)
            if ticket is None or ticket.deleted_at is not None or address is None:
                plans.append("skipped")
            else:
                plans.append((address, ticket.number))
        return plans

    async def _claim_many(self, emails: list[NotifyInput]) -> bool:
        """Commit the send-once claims of `emails` and their audit rows in one transaction;
        False (nothing committed) when one was claimed concurrently."""
        runtime = self.runtime
        now = datetime.now(UTC)
        try:
            async with runtime.database.transaction(inline=True) as session:
                # A Core insert (a claim is never changed, only deleted by `_release`).
                await session.execute(
                    insert(_CLAIMS),
                    [
                        {
                            "key": notify.notification_key,
                            "channel": "email",
                            "ticket_id": notify.ticket_id,
                            "recipient_id": notify.recipient_id,
                            "kind": notify.kind.value,
                            "sent_at": now,
                        }
                        for notify in emails
                    ],
                )
                await runtime.audit.record_many(
                    session,
                    [
                        AuditEntry(
                            "notification.email",
                            table="users",
                            record_id=notify.recipient_id,
                            details={
                                "kind": notify.kind.value,
                                "ticket_id": str(notify.ticket_id),
                            },
                        )
                        for notify in emails
                    ],
                )
        except IntegrityError:
            return False
        return True

    @activity.defn(name=ActivityName.PUBLISH_EVENT)
    async def publish_event(self, event: PushInput) -> list[str]:
        """Push a ticket event to the sockets that may hear it; returns the rooms."""
        async with self.runtime.database.read() as session:
            ticket = await session.get(Ticket, event.ticket_id)
            if ticket is None or ticket.deleted_at is not None:
                return []
            number, requester_id = ticket.number, ticket.requester_id
            assignee_id = event.assignee_id or ticket.assignee_id
        return await publish(
            self.runtime, event, number=number, requester_id=requester_id, assignee_id=assignee_id
        )


async def publish(
    runtime: Runtime,
    event: PushInput,
    *,
    number: int,
    requester_id: uuid.UUID,
    assignee_id: uuid.UUID | None,
) -> list[str]:
    """Publish one ticket event, given what the row says (number, requester, assignee), to
    the rooms `helpdesk.push.rooms_for` picks; returns the rooms."""
    payload = push.TicketEventPayload(
        event_id=event.event_id,
        ticket_id=event.ticket_id,
        number=number,
        status=event.status,
        previous_status=event.previous_status,
        priority=event.priority,
        assignee_id=event.assignee_id,
        escalation_level=event.escalation_level,
        escalated_to=event.escalated_to,
        comment_id=event.comment_id,
        internal=event.internal if event.event is push.PushEvent.COMMENT_ADDED else None,
        sla_clock=event.sla_clock,
        attachment_id=event.attachment_id,
        at=datetime.now(UTC),
    )
    rooms = push.rooms_for(
        event.event,
        ticket_id=event.ticket_id,
        requester_id=requester_id,
        assignee_id=assignee_id,
        escalated_to=event.escalated_to,
        internal=event.internal,
        uploader_id=event.uploader_id,
    )
    await push.publisher_for(runtime).publish(event.event.value, payload.to_message(), rooms)
    return rooms


async def publish_for_row(runtime: Runtime, events: list[PushInput], row: Ticket) -> bool:
    """Publish `events` about a ticket whose row the caller has just committed (so no
    second read), best-effort: False, logged, when one could not go out; the caller's
    workflow then sends them the old way."""
    try:
        for event in events:
            await publish(
                runtime,
                event,
                number=row.number,
                requester_id=row.requester_id,
                assignee_id=event.assignee_id or row.assignee_id,
            )
    except Exception as exc:  # the change is saved; the push is best-effort here
        kinds = ",".join(e.event.value for e in events)
        log.warning("push %s after commit failed: %s", kinds, type(exc).__name__)
        return False
    return True
