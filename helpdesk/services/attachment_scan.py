"""The virus scan of an attachment: arranged after the upload commits (a Temporal
workflow, retried later when it cannot start), and the scan itself. CLEAN releases the
file; INFECTED destroys its bytes at the verdict; until then it stays quarantined."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from temporalio.common import WorkflowIDConflictPolicy

from helpdesk.crypto import IntegrityError
from helpdesk.errors import DataIntegrityError, Gone, NotFound
from helpdesk.rules.contracts import (
    ATTACHMENT_SCAN_WORKFLOW,
    ScanRequest,
    attachment_scan_workflow_id,
)
from helpdesk.runtime import Runtime
from helpdesk.scanner import ScanVerdict
from helpdesk.services import attachment_history
from helpdesk.services.attachment_access import TABLE, now
from helpdesk.services.attachment_history import AttachmentEvent
from helpdesk.services.attachment_store import get_scanner, get_store
from helpdesk.storage.store import ObjectMissing
from models.attachment import Attachment
from models.enums import ScanStatus
from models.ticket import Ticket

log = logging.getLogger("helpdesk.attachments")

SCAN_START_TIMEOUT_SECONDS = 10


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What a scan concluded (for the workflow to notify uploader and agents)."""

    attachment_id: uuid.UUID
    ticket_id: uuid.UUID
    uploader_id: uuid.UUID
    scan_status: str
    is_internal: bool
    signature: str | None = None
    deleted: bool = False


ScanStarter = Callable[[Runtime, uuid.UUID, uuid.UUID], Awaitable[None]]


async def start_scan_workflow(
    runtime: Runtime, ticket_id: uuid.UUID, attachment_id: uuid.UUID
) -> None:
    """Default scan starter: the dedicated `AttachmentScanWorkflow` (idempotent by id)."""
    await runtime.temporal.start_workflow(
        ATTACHMENT_SCAN_WORKFLOW,
        ScanRequest(attachment_id=attachment_id, ticket_id=ticket_id),
        id=attachment_scan_workflow_id(attachment_id),
        task_queue=runtime.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Virus scan of an attachment",
    )


async def request_scan(runtime: Runtime, ticket_id: uuid.UUID, attachment_id: uuid.UUID) -> bool:
    """Arrange the scan of a newly stored attachment (after its row committed).

    Returns False when it could not be arranged now (no Temporal): the attachment stays
    quarantined (PENDING) and `resume_pending_scans` picks it up later."""
    starter: ScanStarter = runtime.scan_starter or start_scan_workflow
    if runtime.temporal is None and starter is start_scan_workflow:
        log.warning("no Temporal client: attachment %s stays quarantined", attachment_id)
        return False
    try:
        # Bounded: an unreachable Temporal must not hold the upload's response for long.
        async with asyncio.timeout(SCAN_START_TIMEOUT_SECONDS):
            await starter(runtime, ticket_id, attachment_id)
    except Exception as exc:
        # Fail closed: still PENDING, so never downloadable; a later sweep retries.
        log.warning(
            "could not start the scan of attachment %s (%s); it stays quarantined",
            attachment_id,
            type(exc).__name__,
        )
        return False
    return True


async def resume_pending_scans(runtime: Runtime, *, limit: int = 1000) -> int:
    """Arrange scans for attachments still PENDING (after an outage); how many."""
    async with runtime.database.transaction() as session:
        rows = (
            await session.execute(
                select(Attachment.ticket_id, Attachment.id)
                .where(
                    Attachment.scan_status == ScanStatus.PENDING.value,
                    Attachment.deleted_at.is_(None),
                )
                .limit(limit)
            )
        ).all()
    started = 0
    for ticket_id, attachment_id in rows:
        if await request_scan(runtime, ticket_id, attachment_id):
            started += 1
    return started


def _outcome(row: Attachment, signature: str | None = None) -> ScanOutcome:
    return ScanOutcome(
        attachment_id=row.id,
        ticket_id=row.ticket_id,
        uploader_id=row.uploader_id,
        scan_status=row.scan_status,
        is_internal=row.is_internal,
        signature=signature,
        deleted=row.deleted_at is not None,
    )


async def _gone(runtime: Runtime, attachment_id: uuid.UUID) -> ScanOutcome:
    """The bytes are missing: a clean end (`deleted`) when the attachment or its ticket was
    deleted meanwhile; `Gone` when a live attachment lost its bytes (worth a failed scan)."""
    async with runtime.database.read() as session:
        row = await session.get(Attachment, attachment_id)
        ticket = await session.get(Ticket, row.ticket_id) if row is not None else None
    if row is None:
        raise NotFound("attachment not found")
    if row.deleted_at is not None or ticket is None or ticket.deleted_at is not None:
        return dataclasses.replace(_outcome(row), deleted=True)
    raise Gone("attachment bytes are gone")


async def scan(runtime: Runtime, attachment_id: uuid.UUID) -> ScanOutcome:
    """Scan an attachment's bytes with clamd and record the verdict. Idempotent.

    CLEAN releases the file; INFECTED destroys its bytes at once. Raises
    `ScannerUnavailable` (retry later; the file stays quarantined) when clamd gives no
    trusted verdict, and a `DomainError` when retrying cannot help."""
    store = get_store(runtime)
    async with runtime.database.transaction() as session:
        row = await session.get(Attachment, attachment_id)
        if row is None:
            raise NotFound("attachment not found")
        if row.deleted_at is not None or row.scan_status != ScanStatus.PENDING.value:
            if row.scan_status == ScanStatus.INFECTED.value and row.storage_key:
                await store.delete(row.storage_key)  # finish a destruction cut short
            return _outcome(row)
        ticket = await session.get(Ticket, row.ticket_id)
        if ticket is None or ticket.deleted_at is not None:
            # The ticket was disposed of (its key and bytes with it): nothing left to scan.
            return dataclasses.replace(_outcome(row), deleted=True)
        key = await runtime.keys.get(session, ticket.data_key_id)
        storage_key = row.storage_key
    if storage_key is None:
        return await _gone(runtime, attachment_id)
    try:
        chunks = await store.get(storage_key, key=key, attachment_id=attachment_id)
        verdict: ScanVerdict = await get_scanner(runtime).scan_stream(chunks)
    except ObjectMissing:
        return await _gone(runtime, attachment_id)
    except IntegrityError as exc:
        await runtime.audit.record_separately(
            runtime.database,
            "attachment.integrity_failure",
            outcome="failure",
            table=TABLE,
            record_id=attachment_id,
            details={"during": "scan"},
        )
        raise DataIntegrityError("stored attachment failed its integrity check") from exc
    status = ScanStatus.INFECTED if verdict.infected else ScanStatus.CLEAN
    async with runtime.database.transaction() as session:
        row = await session.get(Attachment, attachment_id)
        if row is None:
            raise NotFound("attachment not found")
        if row.deleted_at is not None or row.scan_status != ScanStatus.PENDING.value:
            return _outcome(row)  # another scan or a delete got there first
        row.scan_status = status.value
        row.scanned_at = now()
        event = AttachmentEvent.BLOCKED if verdict.infected else AttachmentEvent.RELEASED
        await attachment_history.record(session, row, event, actor_id=None, at=row.scanned_at)
        await runtime.audit.record(
            session,
            "attachment.scan",
            outcome="success" if verdict.clean else "failure",
            table=TABLE,
            record_id=attachment_id,
            details={
                "ticket_id": str(row.ticket_id),
                "scan_status": status.value,
                "signature": verdict.signature,
            },
        )
        outcome = _outcome(row, verdict.signature)
    if verdict.infected:
        # After the commit: a crash here is finished by the retried activity (see above).
        await store.delete(storage_key)
    return outcome
