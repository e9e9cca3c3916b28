"""The Temporal schedules of the worker: the daily compliance self-check
(`workflows.compliance`), and the one that anchors the audit chain's head every
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
from workflows.compliance import ComplianceWorkflow

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


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> ScheduleHandle:
    """Create the schedule (running it at once), or bring an existing one up to date."""
    try:
        return await client.create_schedule(schedule_id, schedule, trigger_immediately=True)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def updater(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(updater)
        return handle


async def ensure_anchor_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    """Create the anchoring schedule (anchoring at once), or bring it up to date."""
    return await _ensure(client, anchor_schedule_id(settings), anchor_schedule(settings))


def compliance_schedule_id(settings: Settings) -> str:
    return f"compliance-{settings.temporal_task_queue}"


def compliance_schedule(settings: Settings) -> Schedule:
    every = timedelta(hours=settings.compliance_interval_hours)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ComplianceWorkflow.run,
            id=compliance_schedule_id(settings),
            task_queue=settings.temporal_task_queue,
            execution_timeout=timedelta(hours=1),
            static_summary="HIPAA self-check: every control, mailed to the administrators",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
        state=ScheduleState(note="helpdesk: the daily HIPAA self-check"),
    )


async def ensure_compliance_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    return await _ensure(client, compliance_schedule_id(settings), compliance_schedule(settings))


async def ensure_anchor_schedule_or_warn(client: Client, settings: Settings) -> None:
    """For worker start-up: the anchoring and compliance schedules. One that cannot be set
    up now is logged, not fatal (the next start tries again; `helpdesk audit verify` reports
    a stale anchor meanwhile)."""
    for what, ensure in (
        ("audit anchor", ensure_anchor_schedule),
        ("compliance", ensure_compliance_schedule),
    ):
        try:
            await ensure(client, settings)
        except Exception as exc:
            log.warning("could not set up the %s schedule: %s", what, type(exc).__name__)
