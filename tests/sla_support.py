"""Helpers of the SLA workflow tests: fast targets, waiting for a condition, a ticket's row
and history."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from helpdesk.runtime import Runtime
from helpdesk.services import sla as sla_service
from models.enums import Priority
from models.sla import EscalationRule, SlaPolicy
from models.ticket import Ticket, TicketHistory

FAST = {"sla_seconds_per_minute": 1.0}


async def set_targets(
    runtime: Runtime,
    priority: str,
    first: int,
    resolution: int,
    rules: list[tuple[str, int, int, list[str]]] | None = None,
) -> None:
    """Targets in policy minutes (= seconds here); `rules` replace that priority's rules."""
    async with runtime.database.transaction() as session:
        policy = await session.scalar(select(SlaPolicy).where(SlaPolicy.priority == priority))
        assert policy is not None
        await sla_service.save_policy(
            session,
            runtime,
            policy_id=policy.id,
            priority=Priority(priority),
            first_response_minutes=first,
            resolution_minutes=resolution,
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
