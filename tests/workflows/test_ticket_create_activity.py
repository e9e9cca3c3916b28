"""The create activity, attempted again after its first attempt committed (the commit
outlived the answer): the repeat answers from the row the first one wrote, and writes
nothing a second time."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.tickets import TicketActivities
from helpdesk.rules.contracts import Actor
from helpdesk.runtime import Runtime
from helpdesk.services.tickets import NewTicket, seal_new
from models.audit import AuditLog
from models.ticket import IdempotencyRecord, Ticket, TicketHistory, TicketTag
from tests.support.factories import make_user


async def test_a_repeated_create_answers_from_the_row_and_writes_nothing_twice(
    runtime: Runtime,
) -> None:
    requester = await make_user(runtime)
    ticket_id = uuid.uuid4()
    async with runtime.database.read() as session:
        sealed = await seal_new(
            session,
            runtime,
            ticket_id=ticket_id,
            number=await runtime.ticket_numbers.take(),
            requester=Actor(id=requester.id, role="END_USER"),
            data=NewTicket(title="Printer on fire", description=None, tags=("hardware",)),
            auto_assign=False,
            idempotency_key="key-1",
        )
    activities = TicketActivities(runtime)

    first = await ActivityEnvironment().run(activities.create_ticket, sealed)
    again = await ActivityEnvironment().run(activities.create_ticket, sealed)

    assert first.applied and not again.applied
    assert again.sla == first.sla
    assert (again.assignee_id, again.due_date, again.version) == (
        first.assignee_id,
        first.due_date,
        first.version,
    )
    async with runtime.database.read() as session:
        for model in (Ticket, TicketHistory, TicketTag, IdempotencyRecord):
            assert await session.scalar(select(func.count()).select_from(model)) == 1
        actions = (await session.scalars(select(AuditLog.action))).all()
        assert actions.count("ticket.create") == 1
        assert (await runtime.audit.verify(session)).ok
