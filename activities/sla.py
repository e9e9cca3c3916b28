"""SLA activities: the policy snapshot a ticket runs under, and the one idempotent write of
SLA facts (fulfilment, pause, resume, stop, recompute, breach, escalation steps) into ticket
history + audit, with the ticket row's due dates kept current in the same transaction.

Idempotent: each history entry has its (ticket, event key) unique; a retried activity finds
its entries and writes nothing twice. The due-date columns are set to the values given, so
writing them again is harmless.

`record_sla_then_push` is the same write followed, after the commit, by the event's Socket.IO
push (a breach: record and push in one activity instead of two). The push is best-effort
there: a push that fails never fails the record, the workflow then sends it with its own
push activity. A retry that finds the entries written pushes again (clients drop a repeated
event id), since the attempt before may have died between commit and push.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notifications import publish_for_row
from helpdesk import metrics
from helpdesk.analytics import facts as analytics_facts
from helpdesk.context import RequestContext, set_context
from helpdesk.rules.activity_contracts import (
    ActivityName,
    LoadPolicy,
    RecipientsQuery,
    SlaRecorded,
    SlaWrite,
    SlaWriteAndPush,
)
from helpdesk.rules.contracts import Failure
from helpdesk.rules.sla_policy import SlaPolicySnapshot
from helpdesk.runtime import Runtime
from helpdesk.services import sla as sla_service
from models.base import utcnow
from models.enums import Role
from models.ticket import Ticket, TicketHistory
from models.user import User

SYSTEM_ROLE = "SYSTEM"


class SlaActivities:
    """Activities of the ticket workflow's SLA clocks, around the process's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.load_sla_policy,
            self.record_sla,
            self.record_sla_then_push,
            self.sla_recipients,
        ]

    @activity.defn(name=ActivityName.LOAD_SLA_POLICY)
    async def load_sla_policy(self, query: LoadPolicy) -> SlaPolicySnapshot:
        """The policy in force now for a priority (targets, calendar, escalation steps)."""
        async with self.runtime.database.transaction() as session:
            return await sla_service.policy_snapshot(session, self.runtime.settings, query.priority)

    @activity.defn(name=ActivityName.RECORD_SLA)
    async def record_sla(self, write: SlaWrite) -> int:
        """Write SLA history entries once each, an audit row for each new one, and the
        ticket's due dates. Returns how many entries were new."""
        new, _ = await self._record(write)
        return new

    @activity.defn(name=ActivityName.RECORD_SLA_THEN_PUSH)
    async def record_sla_then_push(self, work: SlaWriteAndPush) -> SlaRecorded:
        """`record_sla`, then publish `work.push` once the write has committed."""
        new, ticket = await self._record(work.write)
        pushed = await publish_for_row(self.runtime, [work.push], ticket)
        return SlaRecorded(new=new, pushed=pushed)

    async def _record(self, write: SlaWrite) -> tuple[int, Ticket]:
        """The write of `record_sla`, committed; returns the new entries and the row."""
        set_context(
            RequestContext(request_id=f"sla:{write.ticket_id}"[:64], actor_role=SYSTEM_ROLE)
        )
        async with self.runtime.database.transaction() as session:
            ticket = await session.get(Ticket, write.ticket_id)
            if ticket is None or ticket.deleted_at is not None:
                raise ApplicationError(
                    "the ticket was deleted", type=Failure.TICKET_GONE, non_retryable=True
                )
            existing = (
                set(
                    await session.scalars(
                        select(TicketHistory.event_key).where(
                            TicketHistory.ticket_id == write.ticket_id,
                            TicketHistory.event_key.in_([e.event_key for e in write.entries]),
                        )
                    )
                )
                if write.entries
                else set()
            )
            new = 0
            for entry in write.entries:
                if entry.event_key in existing:
                    continue
                existing.add(entry.event_key)
                session.add(
                    TicketHistory(
                        ticket_id=write.ticket_id,
                        event_key=entry.event_key,
                        at=entry.at,
                        actor_id=None,
                        action=entry.action,
                        changes=dict(entry.changes),
                    )
                )
                await self.runtime.audit.record(
                    session,
                    f"ticket.{entry.action}",
                    table="tickets",
                    record_id=write.ticket_id,
                    actor_role=SYSTEM_ROLE,
                    details={
                        "event_key": entry.event_key,
                        "at": entry.at.isoformat(),
                        **{
                            k: v
                            for k, v in entry.changes.items()
                            if k in ("clock", "threshold_percent", "level", "due_at")
                        },
                    },
                )
                new += 1
                metrics.count_ticket_event(entry.action)
            due = write.due
            ticket.due_date = due.due_date
            ticket.first_response_due_at = due.first_response_due_at
            ticket.resolution_due_at = due.resolution_due_at
            ticket.sla_at_risk_at = due.at_risk_at
            if write.breached_at is not None and ticket.sla_breached_at is None:
                ticket.sla_breached_at = write.breached_at
            for entry in write.entries:
                if (
                    entry.action == "sla.fulfilled"
                    and entry.changes.get("clock") == ("first_response")
                    and ticket.first_response_at is None
                ):
                    ticket.first_response_at = entry.at
            await session.flush()
            await analytics_facts.record(
                session,
                ticket,
                at=utcnow(),
                breaches=[
                    (str(entry.changes.get("clock")), entry.at)
                    for entry in write.entries
                    if entry.action == "sla.breached"
                ],
            )
        return new, ticket

    @activity.defn(name=ActivityName.SLA_RECIPIENTS)
    async def sla_recipients(self, query: RecipientsQuery) -> list[uuid.UUID]:
        """Who an SLA warning or escalation notifies: the assignee, the active managers,
        the person escalated to; each once."""
        async with self.runtime.database.transaction() as session:
            ticket = await session.get(Ticket, query.ticket_id)
            if ticket is None or ticket.deleted_at is not None:
                return []
            found: list[uuid.UUID] = []
            if "assignee" in query.notify and ticket.assignee_id is not None:
                found.append(ticket.assignee_id)
            if "managers" in query.notify:
                found += list(
                    await session.scalars(
                        select(User.id)
                        .where(User.role == Role.MANAGER.value, User.is_active.is_(True))
                        .order_by(User.id)
                    )
                )
            if "escalated_to" in query.notify and query.escalated_to is not None:
                found.append(query.escalated_to)
            return list(dict.fromkeys(found))
