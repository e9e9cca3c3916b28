"""ComplianceWorkflow: one run per tick of the daily compliance schedule
(`workers.audit_schedule`). The report's summary (control names, no PHI) is its result, so
the Temporal UI shows each day's verdict."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.activity_contracts import ActivityName, ComplianceSummary
    from helpdesk.temporal import ui_text


@workflow.defn(name="Compliance")
class ComplianceWorkflow:
    """Run the HIPAA self-check once."""

    @workflow.run
    async def run(self) -> ComplianceSummary:
        workflow.set_current_details(ui_text("Running the HIPAA self-check"))
        summary: ComplianceSummary = await workflow.execute_activity(
            ActivityName.COMPLIANCE_REPORT,
            result_type=ComplianceSummary,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=5),
            summary="check every control, mail the administrators",
        )
        verdict = "all controls pass" if summary.ok else "failing: " + ", ".join(summary.failing)
        workflow.set_current_details(ui_text(f"Self-check: {verdict}"))
        return summary
