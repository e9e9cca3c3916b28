"""A ticket's timeline built step by step through the real writers of the read model
(ticket creation, the persisted change, the comment activity, the SLA activity), on a clock
the test moves: what each analytics definition is tested on."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

import activities.comments
import activities.sla
from activities.comments import CommentActivities
from activities.sla import SlaActivities
from helpdesk.migrate import upgrade
from helpdesk.rules.activity_contracts import CommentRecord, SlaHistoryEntry, SlaWrite
from helpdesk.rules.contracts import Actor, FieldUpdates, PersistChange
from helpdesk.rules.sla import SlaDueDates
from helpdesk.runtime import Runtime
from helpdesk.services import satisfaction, tickets
from models.analytics import AnalyticsRollup, TicketFact
from models.comment import Comment
from models.enums import Role
from tests.conftest import postgres_available

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


class Clock:
    """`utcnow` of the ticket writers, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def install_clock(monkeypatch: pytest.MonkeyPatch, start: datetime = START) -> Clock:
    clock = Clock(start)
    monkeypatch.setattr(tickets, "utcnow", clock)
    monkeypatch.setattr(activities.comments, "utcnow", clock)
    monkeypatch.setattr(activities.sla, "utcnow", clock)
    monkeypatch.setattr(satisfaction, "utcnow", clock)
    return clock


class Timeline:
    """Steps of tickets' lives, each written by the code path production uses."""

    def __init__(self, runtime: Runtime, clock: Clock, requester: uuid.UUID, agent: uuid.UUID):
        self.runtime = runtime
        self.clock = clock
        self.requester = requester
        self.agent = agent
        self.status: dict[uuid.UUID, str] = {}

    async def create(
        self, priority: str = "MEDIUM", category_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        async with self.runtime.database.transaction() as session:
            inserted = await tickets.insert_ticket(
                session,
                self.runtime,
                requester_id=self.requester,
                data=tickets.NewTicket(
                    title="canary title",
                    description=None,
                    priority=priority,
                    category_id=category_id,
                ),
                auto_assign=False,
            )
        self.status[inserted.id] = "OPEN"
        return inserted.id

    async def change(
        self, ticket_id: uuid.UUID, action: str, note: str | None = None, **fields: object
    ) -> None:
        changes: dict[str, object] = {}
        if "status" in fields:
            changes["status"] = {"old": self.status[ticket_id], "new": fields["status"]}
            self.status[ticket_id] = str(fields["status"])
        async with self.runtime.database.transaction() as session:
            await tickets.apply_change(
                session,
                self.runtime,
                PersistChange(
                    ticket_id=ticket_id,
                    event_key=uuid.uuid4().hex,
                    actor=Actor(id=self.agent, role=Role.SUPPORT_AGENT.value),
                    action=action,
                    updates=FieldUpdates(fields=list(fields), **fields),
                    changes=changes,
                    note=note,
                ),
            )

    async def assign(self, ticket_id: uuid.UUID, agent: uuid.UUID | None = None) -> None:
        await self.change(ticket_id, "assigned", assignee_id=agent or self.agent)

    async def set_status(self, ticket_id: uuid.UUID, status: str) -> None:
        await self.change(ticket_id, "status_changed", status=status)

    async def escalate(self, ticket_id: uuid.UUID, level: int) -> None:
        await self.change(ticket_id, "escalated", escalated=True, escalation_level=level)

    async def reply(
        self, ticket_id: uuid.UUID, *, staff: bool = True, internal: bool = False
    ) -> None:
        author = self.agent if staff else self.requester
        role = Role.SUPPORT_AGENT if staff else Role.END_USER
        async with self.runtime.database.transaction() as session:
            comment = Comment(ticket_id=ticket_id, author_id=author, is_internal=internal)
            session.add(comment)
            await session.flush()
            comment_id = comment.id
        await CommentActivities(self.runtime).record_comment(
            CommentRecord(
                ticket_id=ticket_id,
                event_key=uuid.uuid4().hex,
                comment_id=comment_id,
                actor=Actor(id=author, role=role.value),
                internal=internal,
                first_response=staff and not internal,
            )
        )

    async def breach(self, ticket_id: uuid.UUID, clock_name: str) -> None:
        await SlaActivities(self.runtime).record_sla(
            SlaWrite(
                ticket_id=ticket_id,
                entries=[
                    SlaHistoryEntry(
                        event_key=f"breach-{clock_name}-{uuid.uuid4().hex[:8]}",
                        action="sla.breached",
                        at=self.clock.now,
                        changes={"clock": clock_name},
                    )
                ],
                due=SlaDueDates(
                    due_date=None,
                    first_response_due_at=None,
                    resolution_due_at=None,
                    at_risk_at=None,
                ),
                breached_at=self.clock.now,
            )
        )


@contextlib.asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL database (as conftest's `pg_url`), dropped afterwards."""
    import asyncpg

    if not postgres_available():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    name = f"helpdesk_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    await asyncio.to_thread(upgrade, url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def rollup_snapshot(rt: Runtime) -> tuple[dict[Any, Any], dict[Any, Any]]:
    async with rt.database.read() as session:
        cells = {
            (r.dim, r.hour, r.value): r.metrics
            for r in await session.scalars(select(AnalyticsRollup))
        }
        facts = {
            f.ticket_id: {c: getattr(f, c) for c in TicketFact.__table__.columns.keys()}
            for f in await session.scalars(select(TicketFact))
        }
    return cells, facts
