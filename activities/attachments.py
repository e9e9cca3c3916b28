"""The attachment scan activity: stream an attachment's decrypted bytes to clamd.

A thin adapter over `helpdesk.services.attachment_scan.scan`: CLEAN releases the file,
INFECTED destroys its bytes and returns the verdict (the calling workflow notifies the
uploader and the agents). No trusted verdict (clamd down, timeout, odd answer) raises a
*retryable* error, so the workflow's retry policy keeps the file quarantined until clamd is
back. Errors retrying cannot fix (attachment gone, integrity failure) are non-retryable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from helpdesk import metrics
from helpdesk.errors import DomainError
from helpdesk.rules.activity_contracts import (
    SCAN_LIMIT_EXCEEDED,
    SCANNER_UNAVAILABLE,
    ActivityName,
    ScanResult,
)
from helpdesk.rules.contracts import ScanRequest
from helpdesk.runtime import Runtime
from helpdesk.scanner import ScanLimitExceeded, ScannerUnavailable
from helpdesk.services import attachment_scan

# Attempts that find the bytes of a live attachment missing before the scan fails for good.
BYTES_MISSING_RETRIES = 3


log = logging.getLogger("helpdesk.scan")


class AttachmentActivities:
    """Attachment activities around the process's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name=ActivityName.SCAN_ATTACHMENT)
    async def scan_attachment(self, request: ScanRequest) -> ScanResult:
        """Scan one attachment; idempotent (a decided attachment is not scanned again)."""
        try:
            outcome = await attachment_scan.scan(self.runtime, request.attachment_id)
        except ScanLimitExceeded as exc:
            metrics.SCANS.labels(verdict="limit_exceeded").inc()
            # Fail closed without looping: quarantined until clamd's limit is raised.
            raise ApplicationError(str(exc), type=SCAN_LIMIT_EXCEEDED, non_retryable=True) from exc
        except ScannerUnavailable as exc:
            metrics.SCANS.labels(verdict="scanner_unavailable").inc()
            # Expected while clamd is down: one line per retry, not the SDK's traceback
            # (a benign failure is logged at DEBUG by the worker).
            log.warning(
                "attachment scan retried: %s (%s)", exc, self.runtime.settings.clamd_address
            )
            raise ApplicationError(
                str(exc),
                type=SCANNER_UNAVAILABLE,
                non_retryable=False,
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        except DomainError as exc:
            if exc.code == "gone" and activity.info().attempt < BYTES_MISSING_RETRIES:
                # A delete removes the bytes before it marks the row: give it a moment, the
                # next attempt then ends the scan cleanly (`deleted`).
                raise ApplicationError(
                    "attachment bytes missing", type="AttachmentBytesMissing"
                ) from None
            raise ApplicationError(exc.message, type=exc.code, non_retryable=True) from exc
        metrics.SCANS.labels(verdict=str(outcome.scan_status).lower()).inc()
        return ScanResult(
            attachment_id=outcome.attachment_id,
            ticket_id=outcome.ticket_id,
            uploader_id=outcome.uploader_id,
            scan_status=outcome.scan_status,
            is_internal=outcome.is_internal,
            signature=outcome.signature,
            deleted=outcome.deleted,
        )

    def all(self) -> list[Callable[..., Any]]:
        """The bound activity methods to register."""
        return [self.scan_attachment]
