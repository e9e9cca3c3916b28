"""Who an escalation that names nobody goes to (`assignment.escalation_manager`): the manager
it already went to while still active, else the active manager holding the fewest open
escalated tickets, ties to the smallest id. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import update

from api.app import prepare_runtime
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import assignment
from models.enums import Role, TicketStatus
from models.ticket import Ticket
from models.user import User
from tests.conftest import make_settings
from tests.support.factories import make_user
from tests.support.ticket_rows import make_ticket


async def _escalate_to(runtime: Runtime, ticket: Ticket, user_id: uuid.UUID | None) -> None:
    async with runtime.database.transaction() as session:
        await session.execute(
            update(Ticket)
            .where(Ticket.id == ticket.id)
            .values(escalated=user_id is not None, escalated_to=user_id)
        )


async def _target(runtime: Runtime, ticket: Ticket) -> uuid.UUID | None:
    async with runtime.database.transaction() as session:
        row = await session.get(Ticket, ticket.id)
        assert row is not None
        return await assignment.escalation_manager(session, row)


async def _check(runtime: Runtime) -> None:
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    busy, free = sorted(
        [await make_user(runtime, Role.MANAGER) for _ in range(2)], key=lambda a: a.id
    )
    ticket = await make_ticket(runtime, requester_id=requester.id)
    assert await _target(runtime, ticket) == busy.id  # a tie: the smallest id

    held = await make_ticket(runtime, requester_id=requester.id)
    await _escalate_to(runtime, held, busy.id)
    closed = await make_ticket(runtime, requester_id=requester.id, status=TicketStatus.CLOSED)
    await _escalate_to(runtime, closed, free.id)  # a closed ticket is no load
    assert await _target(runtime, ticket) == free.id

    await _escalate_to(runtime, ticket, busy.id)  # already went to busy: stays with them
    assert await _target(runtime, ticket) == busy.id
    await _escalate_to(runtime, ticket, agent.id)  # went to an agent: the least loaded
    assert await _target(runtime, ticket) == free.id

    async with runtime.database.transaction() as session:
        await session.execute(update(User).where(User.role == "MANAGER").values(is_active=False))
    assert await _target(runtime, ticket) is None


async def test_escalation_manager_on_sqlite(runtime: Runtime) -> None:
    await _check(runtime)


@pytest_asyncio.fixture
async def pg_runtime(pg_url: str, var_dir: Path) -> AsyncIterator[Runtime]:
    rt = prepare_runtime(build_runtime(make_settings(var_dir, database_url=pg_url)))
    try:
        yield rt
    finally:
        await rt.close()


@pytest.mark.postgres
async def test_escalation_manager_on_postgresql(pg_runtime: Runtime) -> None:
    await _check(pg_runtime)
