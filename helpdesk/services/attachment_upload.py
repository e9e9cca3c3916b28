"""Attachment upload: who may attach, and the file streamed, counted against the size
limit, typed by its content (`helpdesk.sniff`), encrypted, stored and recorded PENDING its
scan. No transaction stays open while the bytes move."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from helpdesk import policy
from helpdesk.crypto import DataKey
from helpdesk.errors import NotFound, PayloadTooLarge, PermissionDenied, ValidationFailed
from helpdesk.runtime import Runtime
from helpdesk.services import attachment_history
from helpdesk.services.attachment_access import (
    TABLE,
    AttachmentInfo,
    attachment_info,
    now,
    seal_name,
    visible_ticket,
)
from helpdesk.services.attachment_history import AttachmentEvent
from helpdesk.services.attachment_store import get_store
from helpdesk.sniff import SNIFF_BYTES, is_executable, sanitise_filename, sniff_mime
from helpdesk.storage.store import StoredObject, storage_key_for
from models.attachment import Attachment
from models.enums import ScanStatus
from models.ticket import Ticket


class UnsupportedFileType(ValidationFailed):
    """The content is none of the allowed types, whatever the client claimed."""

    code = "unsupported_file_type"


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """A ticket the caller may attach to, with its data key unwrapped for this upload."""

    ticket_id: uuid.UUID
    key: DataKey
    uploader_id: uuid.UUID
    is_internal: bool


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
                filename_enc=seal_name(target.key, attachment_id, name),
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
                session, row, AttachmentEvent.UPLOADED, actor_id=target.uploader_id, at=now()
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
    return attachment_info(row, name)
