"""A ticket's SLA clocks rebuilt from the database, for a workflow started again by the
reconciler (a lost start, or a disaster recovery whose Temporal data is gone).

Without this, a workflow started with no clocks starts them at its own start: a ticket
restored from a backup, or started late, would get its full SLA again. Here the clocks start
at the ticket's creation and replay the SLA history the workflow wrote (`sla.*` rows:
fulfilment, pauses, resumes, stops, recomputations, breaches and escalation steps), so the
remaining time, the breaches already recorded and the steps already fired all come back as
they were, and nothing fires (or notifies) a second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.rules.sla import (
    SlaState,
    change_policy,
    fulfil_first_response,
    pause,
    resume,
    start,
    stop,
)
from helpdesk.rules.sla_policy import SlaClockKind, SlaPolicySnapshot
from helpdesk.services.sla import policy_snapshot
from helpdesk.settings import Settings
from models.ticket import Ticket, TicketHistory


@dataclass(frozen=True)
class SlaEntry:
    """One `sla.*` history row."""

    event_key: str
    action: str
    at: datetime
    changes: dict[str, Any]


def replay(
    policy: SlaPolicySnapshot, created_at: datetime, entries: Iterable[SlaEntry]
) -> SlaState:
    """The clocks as the workflow left them: started at creation, then every recorded SLA
    fact applied in order (pure: the tests call it directly)."""
    state = start(policy, created_at)
    for entry in sorted(entries, key=lambda e: e.at):
        clock = entry.changes.get("clock")
        if entry.action == "sla.fulfilled":
            fulfil_first_response(state, entry.at)
        elif entry.action == "sla.paused":
            pause(state, entry.at)
        elif entry.action == "sla.resumed":
            resume(state, entry.at)
        elif entry.action == "sla.stopped":
            stop(state, entry.at)
        elif entry.action == "sla.recomputed":
            changes = entry.changes
            new = state.policy.model_copy(
                update={
                    "priority": changes.get("to_priority", state.policy.priority),
                    "first_response_seconds": float(
                        changes.get("first_response_target_seconds", policy.first_response_seconds)
                    ),
                    "resolution_seconds": float(
                        changes.get("resolution_target_seconds", policy.resolution_seconds)
                    ),
                }
            )
            change_policy(state, new, entry.at)
        elif entry.action == "sla.breached" and clock:
            due = entry.changes.get("due_at")
            state.clocks[SlaClockKind(clock)].breached_at = (
                datetime.fromisoformat(due) if isinstance(due, str) else entry.at
            )
        elif entry.action == "sla.threshold" and clock:
            key = f"{clock}:{entry.changes.get('threshold_percent')}"
            if key not in state.fired:
                state.fired.append(key)
    return state


async def resumed_sla(session: AsyncSession, settings: Settings, ticket: Ticket) -> SlaState:
    """The ticket's clocks rebuilt from its row and SLA history."""
    rows = list(
        await session.scalars(
            select(TicketHistory).where(
                TicketHistory.ticket_id == ticket.id, TicketHistory.action.like("sla.%")
            )
        )
    )
    entries = [SlaEntry(r.event_key, r.action, r.at, dict(r.changes or {})) for r in rows]
    recomputed = sorted((e for e in entries if e.action == "sla.recomputed"), key=lambda e: e.at)
    # The policy of the priority the ticket was created with (before any recomputation).
    first_priority = (
        recomputed[0].changes.get("from_priority", ticket.priority)
        if recomputed
        else ticket.priority
    )
    policy = await policy_snapshot(session, settings, str(first_priority))
    return replay(policy, ticket.created_at, entries)
