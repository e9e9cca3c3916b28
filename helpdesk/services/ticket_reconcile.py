"""The reconciler: every live ticket row has a running workflow (after a restore of the
database without Temporal's, or a workflow an operator terminated). A new ticket's row is
written by its own workflow, so creation leaves no row without one."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import (
    Client,
)
from temporalio.service import RPCError

from helpdesk import errors
from helpdesk.rules.contracts import (
    TICKET_WORKFLOW,
)
from helpdesk.runtime import Runtime
from helpdesk.services import satisfaction
from helpdesk.services.ticket_workflow import client_of, ensure_workflow
from helpdesk.services.tickets import LIVE_STATUSES
from helpdesk.temporal import (
    ticket_workflow_id,
)
from models.ticket import Ticket

log = logging.getLogger("helpdesk.tickets")

# --- reconciliation ----------------------------------------------------------------------


async def reconcile_workflows(
    runtime: Runtime,
    *,
    grace_seconds: float = 10.0,
    concurrency: int = 16,
    window_hours: float | None = None,
) -> int:
    """Start a workflow for every live ticket row of the recent window that has no running
    workflow (the API died between committing the row and starting the workflow, or the
    start failed). Returns how many were started. Safe to run anywhere, any time: starts
    use USE_EXISTING, and a completed run is never restarted. `window_hours` overrides the
    setting (after a restore: every live ticket, whatever its age)."""
    client = client_of(runtime)
    now = datetime.now(UTC)
    window = (
        runtime.settings.ticket_reconcile_window_hours if window_hours is None else window_hours
    )
    since = now - timedelta(hours=window)
    until = now - timedelta(seconds=grace_seconds)
    # Ids only, on a read snapshot (the window can hold many thousands of tickets, and this
    # runs every minute beside the API); whole rows only for the few without a workflow.
    async with runtime.database.read() as session:
        ids = list(
            await session.scalars(
                select(Ticket.id).where(
                    Ticket.status.in_(LIVE_STATUSES),
                    Ticket.deleted_at.is_(None),
                    Ticket.created_at >= since,
                    Ticket.created_at <= until,
                )
            )
        )
    if not ids:
        return 0
    running = await _running_ticket_workflows(client, since)
    missing_ids = [i for i in ids if ticket_workflow_id(i) not in running]
    if not missing_ids:
        return 0
    missing: list[Ticket] = []
    async with runtime.database.read() as session:
        for start in range(0, len(missing_ids), 500):
            chunk = missing_ids[start : start + 500]
            missing += list(
                await session.scalars(
                    select(Ticket).where(
                        Ticket.id.in_(chunk),
                        Ticket.status.in_(LIVE_STATUSES),
                        Ticket.deleted_at.is_(None),
                    )
                )
            )
    gate = asyncio.Semaphore(concurrency)
    started = 0

    async def one(ticket: Ticket) -> None:
        nonlocal started
        async with gate:
            try:
                await ensure_workflow(runtime, ticket)
                started += 1
            except (errors.DomainError, RPCError) as exc:
                log.warning("reconcile: ticket %s not started: %s", ticket.id, type(exc).__name__)

    await asyncio.gather(*(one(t) for t in missing))
    if started:
        log.info("reconcile: started %d missing ticket workflows", started)
    return started


async def _running_ticket_workflows(client: Client, since: datetime) -> set[str]:
    """Ids of running ticket workflows started since `since`, from visibility (eventually
    consistent: a workflow missing here is merely started again with USE_EXISTING)."""
    query = (
        f"WorkflowType = '{TICKET_WORKFLOW}' AND ExecutionStatus = 'Running' "
        f"AND StartTime >= '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    )
    ids: set[str] = set()
    try:
        async for execution in client.list_workflows(query, page_size=1000):
            ids.add(execution.id)
    except RPCError as err:
        log.warning("reconcile: visibility unavailable (%s); checking every row", err.status)
        return set()
    return ids


async def run_reconciler(runtime: Runtime, stop: asyncio.Event | None = None) -> None:
    """Reconcile at start-up, then every `ticket_reconcile_interval_seconds` until `stop`.
    The worker process runs this beside its worker."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await reconcile_workflows(runtime)
        except Exception as exc:  # keep reconciling: the next round may succeed
            log.warning("reconcile round failed: %s", type(exc).__name__)
        try:  # satisfaction surveys whose delay has passed
            await satisfaction.send_due(runtime)
        except Exception as exc:  # the next round tries again
            log.warning("survey round failed: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(
                stop.wait(), timeout=runtime.settings.ticket_reconcile_interval_seconds
            )
        except TimeoutError:
            pass
