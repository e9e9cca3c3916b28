"""Why a visible attachment may not be downloaded, as the error to raise with its audit row.

Every refusal of an object is audited, whatever status it answers: a deleted or infected
attachment (410) and one still quarantined by its virus scan (409) each write an
``attachment.download`` row with outcome ``denied`` (ids, a reason and the scan status only).
"""

from __future__ import annotations

from helpdesk.errors import Conflict, DomainError, Gone
from models.attachment import Attachment
from models.enums import ScanStatus

TABLE = "attachments"


def download_refusal(row: Attachment) -> DomainError | None:
    """Why a visible attachment cannot be downloaded (deleted, infected, still quarantined),
    as the error to raise with its audit row; None when it may be served."""
    exc: DomainError
    if row.deleted_at is not None:
        exc, why = Gone("this attachment was deleted"), "deleted"
    elif row.scan_status == ScanStatus.INFECTED.value:
        exc, why = Gone("this attachment was found infected and destroyed"), "infected"
    elif row.scan_status != ScanStatus.CLEAN.value or row.storage_key is None:
        exc = Conflict("this attachment is quarantined until its virus scan completes")
        why = "quarantined"
    else:
        return None
    exc.details = {"scan_status": row.scan_status}
    exc.audit = {
        "action": "attachment.download",
        "outcome": "denied",
        "table": TABLE,
        "record_id": row.id,
        "details": {"why": why, "scan_status": row.scan_status, "ticket_id": str(row.ticket_id)},
    }
    return exc
