"""AttachmentScanWorkflow: quarantine an attachment until clamd gives a verdict.

Started by the upload (id `attachment-scan-<attachment id>`) until the ticket workflow runs
the scan itself on its `attachment_added` signal; both use `scan_activity_options()` so the
behaviour is the same: retry with backoff (1 s, doubling, at most 60 s apart, without limit)
while the scanner is unreachable, so the file stays quarantined and is released as soon
as clamd answers again.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.attachments import FATAL_SCAN_ERRORS, ScanRequest, ScanResult

__all__ = [
    "AttachmentScanWorkflow",
    "ScanRequest",
    "ScanResult",
    "attachment_scan_workflow_id",
    "scan_activity_options",
]

SCAN_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,  # unlimited: fail closed, never give up and release
    non_retryable_error_types=list(FATAL_SCAN_ERRORS),
)


def attachment_scan_workflow_id(attachment_id: uuid.UUID | str) -> str:
    """Business-key id: one scan workflow per attachment (no PHI)."""
    return f"attachment-scan-{attachment_id}"


def scan_activity_options() -> dict[str, Any]:
    """Keyword arguments of `workflow.execute_activity` for the scan activity."""
    return {
        "start_to_close_timeout": timedelta(minutes=5),
        "retry_policy": SCAN_RETRY_POLICY,
        "summary": "virus scan",
    }


@workflow.defn(name="AttachmentScan")
class AttachmentScanWorkflow:
    """Run the scan activity until it gives a verdict; return it."""

    @workflow.run
    async def run(self, request: ScanRequest) -> ScanResult:
        workflow.set_current_details("Waiting for the virus scanner")
        result: ScanResult = await workflow.execute_activity(
            "scan_attachment", request, result_type=ScanResult, **scan_activity_options()
        )
        workflow.set_current_details(f"Scan finished: {result.scan_status}")
        return result
