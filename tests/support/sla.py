"""Helpers of the SLA workflow tests: targets as a user sets them (hours, days), the clock of
the time-skipping server that fast-forwards a ticket's workflow, waiting for a condition, a
ticket's row and history."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from helpdesk.runtime import Runtime
from helpdesk.services import sla as sla_service
from helpdesk.temporal import ticket_workflow_id
from models.enums import Priority
from models.sla import EscalationRule, SlaPolicy
from models.ticket import Ticket, TicketHistory

# How late an SLA event may fire and still be on time, in seconds. On the time-skipping
# server a timer fires about a second after its instant: the skip is itself a timer task of
# the server, and virtual time runs on with the wall clock until it is processed (measured:
# 0.9-1.0 s). On the plain dev server the tests allowed 1 s.
ON_TIME = 2.0


class SlaClock:
    """Time on the time-skipping dev server (fixture `sla_clock`), per ticket workflow.

    Each workflow has its own virtual clock: it follows the wall clock until `advance`
    fast-forwards it, and keeps the lead afterwards (across continue-as-new too). The server
    skips only while the workflow is idle: every timer due meanwhile fires in order, and
    the activities it starts finish before time moves on. So SLA times are real (policy
    minutes are minutes) and history entries written by the workflow carry its virtual
    time; rows stamped by the database or an activity's own clock stay on the wall clock.
    """

    def __init__(self, env: WorkflowEnvironment, client: Client) -> None:
        self.env = env
        self.client = client  # the app's client: start and drive tickets through it

    def handle(self, ticket_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(ticket_workflow_id(ticket_id))

    async def advance(self, ticket_id: str, duration: timedelta) -> bool:
        """Fast-forward the ticket's workflow by `duration`; True once its virtual time got
        there, False if the workflow ended (the ticket closed) before."""
        return await self.env.fast_forward(self.handle(ticket_id), duration)

    async def now(self, ticket_id: str) -> datetime:
        """The ticket workflow's current (virtual) time: what "now" is for its clocks."""
        return await self.env.get_current_time(self.handle(ticket_id))


def _minutes(duration: timedelta) -> int:
    minutes, rest = divmod(int(duration.total_seconds()), 60)
    assert rest == 0 and minutes > 0, "SLA targets are whole minutes"
    return minutes


async def set_targets(
    runtime: Runtime,
    priority: str,
    first: timedelta,
    resolution: timedelta,
    rules: list[tuple[str, int, int, list[str]]] | None = None,
) -> None:
    """A priority's first-response and resolution targets, as a manager sets them (whole
    minutes); `rules` (clock, threshold %, level, actions) replace that priority's rules."""
    async with runtime.database.transaction() as session:
        policy = await session.scalar(select(SlaPolicy).where(SlaPolicy.priority == priority))
        assert policy is not None
        await sla_service.save_policy(
            session,
            runtime,
            policy_id=policy.id,
            priority=Priority(priority),
            first_response_minutes=_minutes(first),
            resolution_minutes=_minutes(resolution),
            calendar_id=None,
        )
        if rules is not None:
            for rule in await sla_service.list_rules(session, priority=Priority(priority)):
                await session.delete(rule)
            await session.flush()
            for clock, pct, level, actions in rules:
                session.add(
                    EscalationRule(
                        priority=priority,
                        clock=clock,
                        threshold_percent=pct,
                        level=level,
                        actions=actions,
                        enabled=True,
                    )
                )


async def history(runtime: Runtime, ticket_id: str, action: str) -> list[TicketHistory]:
    async with runtime.database.transaction() as session:
        return list(
            await session.scalars(
                select(TicketHistory)
                .where(
                    TicketHistory.ticket_id == uuid.UUID(ticket_id), TicketHistory.action == action
                )
                .order_by(TicketHistory.at)
            )
        )


async def row(runtime: Runtime, ticket_id: str) -> Ticket:
    async with runtime.database.transaction() as session:
        ticket = await session.get(Ticket, uuid.UUID(ticket_id))
        assert ticket is not None
        return ticket


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Poll until `check` returns something truthy (what a user refreshing would see)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)
