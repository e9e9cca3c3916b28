"""Ticket read-model rows for list tests and the list benchmark, written through the
services (data key, sealed text, blind search tokens, tags) without the workflow: the
list reads only the database, so these rows are exactly what it sees."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import update

from helpdesk.runtime import Runtime
from helpdesk.services import ticket_tags, ticket_text
from helpdesk.services.ticket_list_plan import PRIORITY_RANK
from models.base import utcnow
from models.enums import Priority, TicketStatus
from models.ticket import Counter, Ticket


async def make_ticket(
    runtime: Runtime,
    *,
    requester_id: uuid.UUID,
    title: str = "Printer is jammed",
    description: str | None = "Paper stuck in tray two",
    status: TicketStatus = TicketStatus.OPEN,
    priority: Priority = Priority.MEDIUM,
    category_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
    tags: tuple[str, ...] = (),
    escalated: bool = False,
    due_date: datetime | None = None,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
    deleted: bool = False,
) -> Ticket:
    """One ticket row as the workflow's activities would leave it."""
    created = created_at or utcnow()
    async with runtime.database.transaction() as session:
        counter = await session.get(Counter, "ticket_number")
        if counter is None:
            counter = Counter(name="ticket_number", value=0)
            session.add(counter)
        counter.value += 1
        key = await runtime.keys.create(session)
        ticket_id = uuid.uuid4()
        ticket = Ticket(
            id=ticket_id,
            number=counter.value,
            data_key_id=key.key_id,
            title_enc=ticket_text.seal(key, ticket_id, "title", title),
            description_enc=ticket_text.seal(key, ticket_id, "description", description),
            status=status.value,
            priority=priority.value,
            priority_rank=PRIORITY_RANK[priority],
            category_id=category_id,
            requester_id=requester_id,
            assignee_id=assignee_id,
            escalated=escalated,
            due_date=due_date,
            created_by=requester_id,
            deleted_at=created + timedelta(seconds=1) if deleted else None,
        )
        session.add(ticket)
        await session.flush()
        # Timestamps are set after the insert: the model's defaults would stamp "now".
        await session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(created_at=created, updated_at=updated_at or created)
        )
        session.add_all(ticket_tags.rows_for(runtime.blind_index, key, ticket_id, tags))
        await ticket_text.reindex(session, runtime.blind_index, ticket_id, title, description)
    async with runtime.database.transaction() as session:
        fresh = await session.get(Ticket, ticket_id)
    if fresh is None:  # pragma: no cover - written just above
        raise LookupError("ticket row vanished")
    return fresh
