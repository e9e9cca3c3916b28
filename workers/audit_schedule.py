"""The Temporal schedule that anchors the audit chain's head every
`HELPDESK_AUDIT_ANCHOR_INTERVAL_MINUTES` (`workflows.audit_anchor`).

Created when a worker starts (`helpdesk worker`, or the worker inside `helpdesk dev`/the API),
idempotently: a schedule that exists already is updated to the configured interval and task
queue, so M worker replicas share one schedule. The first creation anchors at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from helpdesk.settings import Settings
from workflows.audit_anchor import AuditAnchorWorkflow

log = logging.getLogger("helpdesk.worker")


def anchor_schedule_id(settings: Settings) -> str:
    """One schedule per task queue (the queue whose workers run its workflow)."""
    return f"audit-anchor-{settings.temporal_task_queue}"


def anchor_schedule(settings: Settings) -> Schedule:
    every = timedelta(minutes=settings.audit_anchor_interval_minutes)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AuditAnchorWorkflow.run,
            id=anchor_schedule_id(settings),
            task_queue=settings.temporal_task_queue,
            execution_timeout=max(every, timedelta(minutes=5)),
            static_summary="Anchor the audit chain's head outside the database",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A tick while the previous anchoring still runs is skipped, never queued.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
        state=ScheduleState(note="helpdesk: seals the audit head (row count, hash, time)"),
    )


async def ensure_anchor_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    """Create the schedule (anchoring at once), or bring an existing one up to date."""
    schedule = anchor_schedule(settings)
    schedule_id = anchor_schedule_id(settings)
    try:
        return await client.create_schedule(schedule_id, schedule, trigger_immediately=True)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def updater(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(updater)
        return handle


async def ensure_anchor_schedule_or_warn(client: Client, settings: Settings) -> None:
    """For worker start-up: a schedule that cannot be set up now is logged, not fatal (the
    next start tries again; `helpdesk audit verify` reports a stale anchor meanwhile)."""
    try:
        await ensure_anchor_schedule(client, settings)
    except Exception as exc:
        log.warning("could not set up the audit anchor schedule: %s", type(exc).__name__)
