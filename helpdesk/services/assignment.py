"""Automatic assignment with workload balancing.

An agent's load is the sum of the weights of their open tickets (OPEN or IN_PROGRESS;
RESOLVED tickets wait on the requester and weigh nothing). Weights by priority:

    LOW 1 · MEDIUM 2 · HIGH 4 · CRITICAL 8

so one critical ticket counts as much as eight low ones. Automatic assignment picks the
active SUPPORT_AGENT with the least load; ties go to the agent with the fewest open tickets,
then to the smallest id (deterministic). The pick and the ticket row's update happen in ONE
transaction that holds the assignment lock (SQLite: BEGIN IMMEDIATE serialises writers;
PostgreSQL: a transaction-scoped advisory lock), so concurrent creations spread evenly.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import STAFF_ROLES, Priority, Role, TicketStatus
from models.ticket import Ticket
from models.user import User

log = logging.getLogger("helpdesk.assignment")

PRIORITY_WEIGHT: dict[str, int] = {
    Priority.LOW.value: 1,
    Priority.MEDIUM.value: 2,
    Priority.HIGH.value: 4,
    Priority.CRITICAL.value: 8,
}
OPEN_LOAD_STATUSES = (TicketStatus.OPEN.value, TicketStatus.IN_PROGRESS.value)
# Serialises picks across processes on PostgreSQL ("HDASGN").
_PG_ASSIGN_LOCK = 0x4844_4153_474E


@dataclass(frozen=True, slots=True)
class AgentLoad:
    agent_id: uuid.UUID
    weighted_load: int
    open_tickets: int


def choose_agent(loads: Iterable[AgentLoad]) -> uuid.UUID | None:
    """The least-loaded agent: least weighted load, then fewest open tickets, then id."""
    best = min(
        loads, key=lambda a: (a.weighted_load, a.open_tickets, str(a.agent_id)), default=None
    )
    return best.agent_id if best else None


def spread(loads: Sequence[AgentLoad]) -> int:
    """max - min weighted load (0 for an empty team): how even the team's work is."""
    if not loads:
        return 0
    values = [a.weighted_load for a in loads]
    return max(values) - min(values)


async def lock_assignment(session: AsyncSession) -> None:
    """Take the assignment lock for the rest of the transaction."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_ASSIGN_LOCK})


@functools.cache
def _loads_statement(excluding: bool) -> Select[Any]:
    """Built once per shape: run before every automatic assignment (every creation), its
    construction cost more Python time than its execution. The excluded ticket is a bound
    parameter (`:excluded_ticket`)."""
    weight = case(*((Ticket.priority == name, w) for name, w in PRIORITY_WEIGHT.items()), else_=0)
    join_on = and_(
        Ticket.assignee_id == User.id,
        Ticket.status.in_(OPEN_LOAD_STATUSES),
        Ticket.deleted_at.is_(None),
    )
    if excluding:
        join_on = and_(join_on, Ticket.id != bindparam("excluded_ticket", type_=Ticket.id.type))
    return (
        select(User.id, func.coalesce(func.sum(weight), 0), func.count(Ticket.id))
        .outerjoin(Ticket, join_on)
        .where(User.role == Role.SUPPORT_AGENT.value, User.is_active.is_(True))
        .group_by(User.id)
    )


async def agent_loads(
    session: AsyncSession, *, exclude_ticket: uuid.UUID | None = None
) -> list[AgentLoad]:
    """The open load of every active SUPPORT_AGENT (a ticket being re-assigned excluded)."""
    if exclude_ticket is None:
        rows = await session.execute(_loads_statement(False))
    else:
        rows = await session.execute(_loads_statement(True), {"excluded_ticket": exclude_ticket})
    return [AgentLoad(agent_id, int(load), int(count)) for agent_id, load, count in rows]


async def assign_least_loaded_agent(
    session: AsyncSession, *, exclude_ticket: uuid.UUID | None = None
) -> uuid.UUID | None:
    """Lock, measure and pick, in the caller's transaction; the caller writes the ticket
    row in the same transaction so the next pick sees it."""
    await lock_assignment(session)
    return choose_agent(await agent_loads(session, exclude_ticket=exclude_ticket))


async def is_assignable(session: AsyncSession, agent_id: uuid.UUID) -> bool:
    """An explicit assignee must be an active staff member."""
    role = await session.scalar(
        select(User.role).where(User.id == agent_id, User.is_active.is_(True))
    )
    return role is not None and Role(role) in STAFF_ROLES


async def escalation_manager(session: AsyncSession, ticket: Ticket) -> uuid.UUID | None:
    """Who an escalation that names nobody goes to (the ticket's `escalated_to`): the
    manager it already went to, while still active; else the active MANAGER holding the
    fewest open escalated tickets (ties: the smallest id); None when there is none."""
    manager = select(User.id).where(User.role == Role.MANAGER.value, User.is_active.is_(True))
    if ticket.escalated_to is not None:
        current = await session.scalar(manager.where(User.id == ticket.escalated_to))
        if current is not None:
            return current
    held = (
        select(func.count(Ticket.id))
        .where(
            Ticket.escalated_to == User.id,
            Ticket.escalated.is_(True),
            Ticket.status.in_(OPEN_LOAD_STATUSES),
            Ticket.deleted_at.is_(None),
            Ticket.id != ticket.id,
        )
        .correlate(User)
        .scalar_subquery()
    )
    picked: uuid.UUID | None = await session.scalar(manager.order_by(held, User.id).limit(1))
    return picked
