"""Attachments: upload, download, delete, list, and the virus scan, shared by the API and
the scan activity.

Rules kept here (one place each):
- who may upload, download, list or delete: people who may view the ticket (`policy`);
  internal attachments follow the internal-note rule; anything hidden answers 404;
- quarantine: bytes leave the store only after clamd said CLEAN; PENDING answers 409 and
  INFECTED 410 (its bytes are destroyed at the verdict);
- the file's type comes from its content (`helpdesk.sniff`), its size is counted while it
  streams (413 past `max_upload_bytes`, nothing kept), its name is sanitised and encrypted;
- no database transaction stays open while bytes move (SQLite's write lock would stall
  every other writer during a 25 MB upload): each step is its own short transaction;
- every read and write is audited, with ids, sizes and types only (never a file name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import policy
from helpdesk.crypto import DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.errors import (
    DataIntegrityError,
    Gone,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from helpdesk.runtime import Runtime
from helpdesk.scanner import ClamdClient, ScanVerdict
from helpdesk.services import attachment_history
from helpdesk.services.attachment_history import AttachmentEvent
from helpdesk.services.attachment_refusals import download_refusal
from helpdesk.sniff import SNIFF_BYTES, is_executable, sanitise_filename, sniff_mime
from helpdesk.storage.configured import build_store
from helpdesk.storage.store import (
    AttachmentStore,
    ObjectMissing,
    StoredObject,
    storage_key_for,
    ticket_prefix,
)
from models.attachment import Attachment
from models.enums import ScanStatus
from models.ticket import Ticket

log = logging.getLogger("helpdesk.attachments")

TABLE = "attachments"
SCAN_START_TIMEOUT_SECONDS = 10


class UnsupportedFileType(ValidationFailed):
    """The content is none of the allowed types, whatever the client claimed."""

    code = "unsupported_file_type"


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """An attachment as its viewers see it (the file name decrypted)."""

    id: uuid.UUID
    ticket_id: uuid.UUID
    filename: str
    mime_type: str
    size: int
    sha256: str
    scan_status: str
    is_internal: bool
    uploader_id: uuid.UUID
    created_at: datetime
    scanned_at: datetime | None


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """A ticket the caller may attach to, with its data key unwrapped for this upload."""

    ticket_id: uuid.UUID
    key: DataKey
    uploader_id: uuid.UUID
    is_internal: bool


@dataclass(frozen=True, slots=True)
class Download:
    """An authorised, authenticated download: metadata and the plaintext stream."""

    info: AttachmentInfo
    chunks: AsyncIterator[bytes]


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


# --- process-wide objects -----------------------------------------------------------------


def get_store(runtime: Runtime) -> AttachmentStore:
    """The attachment store of this process, built once from the settings."""
    if runtime.attachment_store is None:
        runtime.attachment_store = build_store(runtime.settings)
    return runtime.attachment_store


def get_scanner(runtime: Runtime) -> ClamdClient:
    if runtime.scanner is None:
        runtime.scanner = ClamdClient(
            runtime.settings.clamd_address, timeout=runtime.settings.clamd_timeout_seconds
        )
    return runtime.scanner


async def close(runtime: Runtime) -> None:
    """Release the store's connections (call at shutdown)."""
    store, runtime.attachment_store = runtime.attachment_store, None
    if store is not None:
        await store.close()


# --- helpers ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _seal_name(key: DataKey, attachment_id: uuid.UUID, name: str) -> bytes:
    return encrypt_field(key, name, table=TABLE, column="filename", row_id=attachment_id)


def _open_name(key: DataKey | None, row: Attachment) -> str:
    if key is None or row.filename_enc is None:
        raise Gone("this attachment's data was disposed of")
    try:
        return decrypt_field(key, row.filename_enc, table=TABLE, column="filename", row_id=row.id)
    except IntegrityError as exc:
        raise DataIntegrityError("a stored attachment name failed its integrity check") from exc


def _info(row: Attachment, filename: str) -> AttachmentInfo:
    return AttachmentInfo(
        id=row.id,
        ticket_id=row.ticket_id,
        filename=filename,
        mime_type=row.mime_type,
        size=row.size,
        sha256=row.sha256,
        scan_status=row.scan_status,
        is_internal=row.is_internal,
        uploader_id=row.uploader_id,
        created_at=row.created_at,
        scanned_at=row.scanned_at,
    )


def _hidden(what: str, record_id: uuid.UUID, table: str = "tickets") -> NotFound:
    """404 for something the caller may not see (or that does not exist), audited."""
    return NotFound(
        f"{what} not found",
        audit={
            "action": "access.denied",
            "outcome": "denied",
            "table": table,
            "record_id": record_id,
            "details": {"why": "not_visible"},
        },
    )


async def visible_ticket(session: AsyncSession, caller: Any, ticket_id: uuid.UUID) -> Ticket:
    """The ticket if the caller may view it; 404 (audited) otherwise."""
    ticket = await session.get(Ticket, ticket_id)
    if (
        ticket is None
        or ticket.deleted_at is not None
        or not policy.can_view_ticket(caller, ticket)
    ):
        raise _hidden("ticket", ticket_id)
    return ticket


async def _visible_attachment(
    session: AsyncSession, caller: Any, attachment_id: uuid.UUID
) -> tuple[Attachment, Ticket]:
    row = await session.get(Attachment, attachment_id)
    if row is None:
        raise _hidden("attachment", attachment_id, TABLE)
    ticket = await session.get(Ticket, row.ticket_id)
    if (
        ticket is None
        or ticket.deleted_at is not None
        or not policy.can_view_ticket(caller, ticket)
        or (row.is_internal and not policy.can_see_internal(caller.role))
    ):
        raise _hidden("attachment", attachment_id, TABLE)
    return row, ticket


# --- upload -------------------------------------------------------------------------------


async def prepare_upload(
    runtime: Runtime, caller: Any, ticket_id: uuid.UUID, *, is_internal: bool
) -> UploadTarget:
    """Check, before any byte is read, that the caller may attach to this ticket."""
    async with runtime.database.transaction() as session:
        ticket = await visible_ticket(session, caller, ticket_id)
        if is_internal and not policy.can_see_internal(caller.role):
            raise PermissionDenied(  # refused for the role: 403, like internal notes
                "only staff may add internal attachments",
                details={"field": "is_internal"},
                audit={
                    "action": "access.denied",
                    "outcome": "denied",
                    "table": "tickets",
                    "record_id": ticket_id,
                    "details": {"why": "internal_attachment"},
                },
            )
        key = await runtime.keys.get(session, ticket.data_key_id)
    return UploadTarget(ticket.id, key, caller.id, is_internal)


class _Inspected:
    """Counts the upload against the limit and decides its type from its first bytes,
    before anything past those bytes reaches the store."""

    def __init__(self, chunks: AsyncIterable[bytes], limit: int, allowed: set[str]) -> None:
        self._chunks = chunks
        self._limit = limit
        self._allowed = allowed
        self.size = 0
        self.mime_type: str | None = None

    def _decide(self, head: bytes) -> None:
        mime = sniff_mime(head)
        if mime is None or mime not in self._allowed:
            raise UnsupportedFileType(
                "this type of file is not accepted",
                details={"allowed": sorted(self._allowed)},
                audit={
                    "action": "attachment.upload",
                    "outcome": "denied",
                    "table": TABLE,
                    "details": {
                        "why": "type",
                        "sniffed": mime or ("executable" if is_executable(head) else "unknown"),
                    },
                },
            )
        self.mime_type = mime

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = bytearray()
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self._limit:
                raise PayloadTooLarge(
                    "the file is larger than allowed",
                    details={"max_bytes": self._limit},
                    audit={
                        "action": "attachment.upload",
                        "outcome": "denied",
                        "table": TABLE,
                        "details": {"why": "size", "max_bytes": self._limit},
                    },
                )
            if self.mime_type is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                self._decide(bytes(head[:SNIFF_BYTES]))
                chunk, head = bytes(head), bytearray()
            yield chunk
        if self.mime_type is None:
            if not head:
                raise ValidationFailed("the file is empty", details={"field": "file"})
            self._decide(bytes(head))
            yield bytes(head)


class UploadSource(Protocol):
    """An incoming file: its bytes as a stream, and the name the client gave, known once
    the stream has been read (a multipart part's headers come before its bytes)."""

    @property
    def filename(self) -> str | None: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...


@dataclass
class BytesSource:
    """An `UploadSource` over chunks already at hand (tools, benchmarks)."""

    filename: str | None
    chunks: AsyncIterable[bytes]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiter(self.chunks)


async def store_upload(
    runtime: Runtime, target: UploadTarget, upload: UploadSource
) -> AttachmentInfo:
    """Stream, inspect, encrypt and store one file; then record it, PENDING its scan.

    Raises PayloadTooLarge / UnsupportedFileType / ValidationFailed with nothing stored."""
    settings = runtime.settings
    attachment_id = uuid.uuid4()
    storage_key = storage_key_for(target.ticket_id, attachment_id)
    store = get_store(runtime)
    inspected = _Inspected(
        upload, settings.max_upload_bytes, set(settings.attachment_allowed_types)
    )
    stored: StoredObject = await store.put(
        storage_key, inspected, key=target.key, attachment_id=attachment_id
    )
    name = sanitise_filename(upload.filename)
    try:
        async with runtime.database.transaction() as session:
            ticket = await session.get(Ticket, target.ticket_id)
            if ticket is None or ticket.deleted_at is not None:
                raise NotFound("ticket not found")
            row = Attachment(
                id=attachment_id,
                ticket_id=target.ticket_id,
                uploader_id=target.uploader_id,
                filename_enc=_seal_name(target.key, attachment_id, name),
                mime_type=inspected.mime_type or "application/octet-stream",
                size=stored.size,
                sha256=stored.sha256,
                storage_key=storage_key,
                scan_status=ScanStatus.PENDING.value,
                is_internal=target.is_internal,
                created_by=target.uploader_id,
                updated_by=target.uploader_id,
            )
            session.add(row)
            await session.flush()
            await attachment_history.record(
                session, row, AttachmentEvent.UPLOADED, actor_id=target.uploader_id, at=_now()
            )
            await runtime.audit.record(
                session,
                "attachment.upload",
                table=TABLE,
                record_id=attachment_id,
                details={
                    "ticket_id": str(target.ticket_id),
                    "size": stored.size,
                    "mime_type": row.mime_type,
                    "is_internal": target.is_internal,
                },
            )
    except BaseException:
        await store.delete(storage_key)
        raise
    return _info(row, name)


# --- scan ---------------------------------------------------------------------------------

ScanStarter = Callable[[Runtime, uuid.UUID, uuid.UUID], Awaitable[None]]


async def start_scan_workflow(
    runtime: Runtime, ticket_id: uuid.UUID, attachment_id: uuid.UUID
) -> None:
    """Default scan starter: the dedicated `AttachmentScanWorkflow` (idempotent by id)."""
    from temporalio.common import WorkflowIDConflictPolicy

    from helpdesk.rules.contracts import (
        ATTACHMENT_SCAN_WORKFLOW,
        ScanRequest,
        attachment_scan_workflow_id,
    )

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
        row.scanned_at = _now()
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


# --- download -----------------------------------------------------------------------------


async def open_download(runtime: Runtime, caller: Any, attachment_id: uuid.UUID) -> Download:
    """Authorise and authenticate a download, then hand out the plaintext stream.

    The whole object is authenticated (and its SHA-256 checked against the record) before
    the first byte is sent, so a tampered file gives a clean error, never garbled bytes."""
    store = get_store(runtime)
    async with runtime.database.transaction() as session:
        row, ticket = await _visible_attachment(session, caller, attachment_id)
        refused = download_refusal(row)
        if refused is not None:
            raise refused
        assert row.storage_key is not None  # a row without bytes was refused above
        key = await runtime.keys.get(session, ticket.data_key_id)
        info = _info(row, _open_name(key, row))
        storage_key = row.storage_key
    try:
        checked = await store.verify(storage_key, key=key, attachment_id=attachment_id)
        if checked.sha256 != info.sha256 or checked.size != info.size:
            raise IntegrityError("stored attachment does not match its record")
        chunks = await store.get(storage_key, key=key, attachment_id=attachment_id)
    except ObjectMissing as exc:
        raise Gone("this attachment's bytes are gone") from exc
    except IntegrityError as exc:
        await runtime.audit.record_separately(
            runtime.database,
            "attachment.integrity_failure",
            outcome="failure",
            table=TABLE,
            record_id=attachment_id,
            details={"during": "download", "ticket_id": str(info.ticket_id)},
        )
        raise DataIntegrityError(
            "this attachment failed its integrity check and cannot be served"
        ) from exc
    async with runtime.database.transaction() as session:
        await runtime.audit.record(
            session,
            "attachment.download",
            table=TABLE,
            record_id=attachment_id,
            details={"ticket_id": str(info.ticket_id), "size": info.size},
        )
    return Download(info=info, chunks=_rechecked(chunks, info.sha256))


async def _rechecked(chunks: AsyncIterator[bytes], sha256: str) -> AsyncIterator[bytes]:
    # Second read, after the verifying one: every segment is authenticated again; a file
    # swapped in between fails here and the response is cut short (never wrong bytes).
    digest = hashlib.sha256()
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise IntegrityError("stored attachment changed while being served")


# --- list ---------------------------------------------------------------------------------


async def list_for_ticket(
    session: AsyncSession, runtime: Runtime, caller: Any, ticket: Ticket
) -> list[AttachmentInfo]:
    """A ticket's attachments the caller may see, oldest first, with their scan state.

    For the ticket details route too (the caller has already been checked against the
    ticket). Audited as one read."""
    query = select(Attachment).where(
        Attachment.ticket_id == ticket.id, Attachment.deleted_at.is_(None)
    )
    if not policy.can_see_internal(caller.role):
        query = query.where(Attachment.is_internal.is_(False))
    rows = list(await session.scalars(query.order_by(Attachment.created_at, Attachment.id)))
    if not rows:
        return []
    key = await runtime.keys.get(session, ticket.data_key_id)
    items = [_info(row, _open_name(key, row)) for row in rows]
    await runtime.audit.record(
        session,
        "attachment.list",
        table=TABLE,
        record_id=ticket.id,
        details={"ticket_id": str(ticket.id), "count": len(items)},
    )
    return items


async def list_attachments(
    runtime: Runtime, caller: Any, ticket_id: uuid.UUID
) -> list[AttachmentInfo]:
    """`GET /tickets/{id}/attachments`: 404 unless the caller may view the ticket."""
    async with runtime.database.transaction() as session:
        ticket = await visible_ticket(session, caller, ticket_id)
        return await list_for_ticket(session, runtime, caller, ticket)


# --- delete -------------------------------------------------------------------------------


async def delete_attachment(runtime: Runtime, caller: Any, attachment_id: uuid.UUID) -> None:
    """Remove an attachment's bytes and mark it deleted: its uploader or staff only."""
    store = get_store(runtime)
    async with runtime.database.transaction() as session:
        row, _ticket = await _visible_attachment(session, caller, attachment_id)
        if row.uploader_id != caller.id and not policy.is_staff(caller.role):
            raise PermissionDenied(
                "only the uploader or staff may delete an attachment",
                audit={
                    "action": "attachment.delete",
                    "outcome": "denied",
                    "table": TABLE,
                    "record_id": attachment_id,
                    "details": {"why": "not_uploader"},
                },
            )
        if row.deleted_at is not None:
            raise Gone("this attachment was already deleted")
        storage_key = row.storage_key
    if storage_key is not None:
        await store.delete(storage_key)
    async with runtime.database.transaction() as session:
        current = await session.get(Attachment, attachment_id)
        if current is None or current.deleted_at is not None:
            return
        current.deleted_at = _now()
        current.updated_by = caller.id
        current.filename_enc = None  # the name is PHI and no longer needed
        await attachment_history.record(
            session, current, AttachmentEvent.DELETED, actor_id=caller.id, at=current.deleted_at
        )
        await runtime.audit.record(
            session,
            "attachment.delete",
            table=TABLE,
            record_id=attachment_id,
            details={"ticket_id": str(current.ticket_id)},
        )


async def delete_ticket_attachments(runtime: Runtime, ticket_id: uuid.UUID) -> int:
    """Remove the bytes of every attachment of a ticket (ticket deletion); how many.

    Idempotent. The caller owns the ticket row's fate and its audit."""
    return await get_store(runtime).delete_prefix(ticket_prefix(ticket_id))
