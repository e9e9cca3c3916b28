"""Re-assignment of a deactivated agent's open tickets, through each ticket's workflow
(a command: it sits above `helpdesk.services.tickets`, which `assignment` serves)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import or_, select

from helpdesk.errors import DomainError
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_commands
from helpdesk.services.assignment import OPEN_LOAD_STATUSES
from models.ticket import Ticket

log = logging.getLogger("helpdesk.services.reassignment")


async def reassign_open_tickets_of(runtime: Runtime, agent_id: uuid.UUID) -> int:
    """Send every open ticket of a (deactivated) agent an automatic re-assignment through its
    workflow. Call after the deactivation is committed. Returns the tickets re-assigned;
    a ticket whose workflow refuses (closed meanwhile, no agent left) is skipped and logged."""
    async with runtime.database.transaction() as session:
        ids = list(
            await session.scalars(
                select(Ticket.id).where(
                    Ticket.assignee_id == agent_id,
                    or_(*(Ticket.status == s for s in OPEN_LOAD_STATUSES)),
                    Ticket.deleted_at.is_(None),
                )
            )
        )
    done = 0
    for ticket_id in ids:
        # A request id derived from agent and ticket: a repeated call is deduplicated.
        request_id = f"reassign-{uuid.uuid5(agent_id, str(ticket_id))}"
        try:
            await ticket_commands.assign_system(runtime, ticket_id, request_id=request_id)
            done += 1
        except DomainError as exc:
            log.warning("re-assignment of ticket %s skipped: %s", ticket_id, exc.code)
    return done
