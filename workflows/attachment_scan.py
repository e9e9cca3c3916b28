"""AttachmentScanWorkflow: quarantine an attachment until clamd gives a verdict.

Started by the upload (id `attachment-scan-<attachment id>`) until the ticket workflow runs
the scan itself on its `attachment_added` signal; both use `scan_activity_options()` so the
behaviour is the same: retry with backoff (1 s, doubling, at most 60 s apart, without limit)
while the scanner is unreachable, so the file stays quarantined and is released as soon
as clamd answers again.

After the verdict: INFECTED emails the
uploader (kind ``attachment_blocked``: the ticket number, never the file's name) and pushes
``attachment.blocked`` to the ticket's staff room, the uploader and the agents; CLEAN pushes
``attachment.ready`` so clients showing the ticket refresh. Keys derive from the attachment
id (``attachment:<id>:blocked``), so a retried activity or a replay sends nothing twice; a
notification that cannot be delivered is logged and never fails the scan.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from helpdesk.notifications import NotificationKind
    from helpdesk.rules.activity_contracts import FATAL_SCAN_ERRORS, ActivityName, ScanResult
    from helpdesk.rules.contracts import (
        ATTACHMENT_SCAN_WORKFLOW,
        ScanRequest,
        attachment_scan_workflow_id,
    )
    from helpdesk.rules.notify import Notification, NotifyInput, PushEvent, PushInput
    from helpdesk.temporal import ui_text
    from workflows.ticket_notify import send_all

__all__ = [
    "AttachmentScanWorkflow",
    "ScanRequest",
    "ScanResult",
    "attachment_scan_workflow_id",
    "scan_activity_options",
    "scan_notifications",
]

SCAN_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,  # unlimited: fail closed, never give up and release
    non_retryable_error_types=list(FATAL_SCAN_ERRORS),
)


def scan_activity_options() -> dict[str, Any]:
    """Keyword arguments of `workflow.execute_activity` for the scan activity."""
    return {
        "start_to_close_timeout": timedelta(minutes=5),
        "retry_policy": SCAN_RETRY_POLICY,
        "summary": "virus scan",
    }


def scan_notifications(result: ScanResult) -> list[Notification]:
    """The emails and pushes a verdict causes (pure). Nothing for a deleted attachment or
    one still without a verdict."""
    if result.deleted:
        return []
    key = f"attachment:{result.attachment_id}"
    if result.scan_status == "INFECTED":
        return [
            NotifyInput(
                kind=NotificationKind.ATTACHMENT_BLOCKED,
                event_key=f"{key}:blocked",
                recipient_id=result.uploader_id,
                ticket_id=result.ticket_id,
            ),
            PushInput(
                event=PushEvent.ATTACHMENT_BLOCKED,
                event_id=f"{key}:blocked",
                ticket_id=result.ticket_id,
                attachment_id=result.attachment_id,
                uploader_id=result.uploader_id,
                internal=result.is_internal,
            ),
        ]
    if result.scan_status == "CLEAN":
        return [
            PushInput(
                event=PushEvent.ATTACHMENT_READY,
                event_id=f"{key}:ready",
                ticket_id=result.ticket_id,
                attachment_id=result.attachment_id,
                internal=result.is_internal,
            )
        ]
    return []


@workflow.defn(name=ATTACHMENT_SCAN_WORKFLOW)
class AttachmentScanWorkflow:
    """Run the scan activity until it gives a verdict; return it."""

    @workflow.run
    async def run(self, request: ScanRequest) -> ScanResult:
        workflow.set_current_details(ui_text("Waiting for the virus scanner"))
        result: ScanResult = await workflow.execute_activity(
            ActivityName.SCAN_ATTACHMENT, request, result_type=ScanResult, **scan_activity_options()
        )
        # An attachment deleted before its verdict ends the scan cleanly ("gone").
        workflow.set_current_details(ui_text(f"Scan finished: {result.outcome}"))
        # `send_all` never raises for a notification: a bad address never fails the scan.
        await send_all(scan_notifications(result))
        return result
