"""AuditAnchorWorkflow: one run per tick of the audit-anchor schedule (see
`workers.audit_schedule`). It seals the audit chain's head and appends it to the anchor store;
the sealed anchor, returned as the workflow's result, stays in its Temporal history as well.
No PHI: a row count, a hash, a time and a MAC."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.activity_contracts import ActivityName, AnchorRecord
    from helpdesk.temporal import ui_text

__all__ = ["AnchorRecord", "AuditAnchorWorkflow"]


@workflow.defn(name="AuditAnchor")
class AuditAnchorWorkflow:
    """Anchor the audit chain's head once."""

    @workflow.run
    async def run(self) -> AnchorRecord:
        workflow.set_current_details(ui_text("Sealing the audit chain's head"))
        anchor: AnchorRecord = await workflow.execute_activity(
            ActivityName.ANCHOR_AUDIT_CHAIN,
            result_type=AnchorRecord,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
            summary="seal and store the audit head",
        )
        workflow.set_current_details(ui_text(f"Anchored the audit chain at row {anchor.rows}"))
        return anchor
