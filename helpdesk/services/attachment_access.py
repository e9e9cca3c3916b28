"""An attachment's record as its viewers see it (the file name sealed under the ticket's
data key), and who may see it: anything hidden answers 404, audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import policy
from helpdesk.crypto import DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.errors import DataIntegrityError, Gone, NotFound
from models.attachment import Attachment
from models.ticket import Ticket

TABLE = "attachments"


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


def now() -> datetime:
    return datetime.now(UTC)


def seal_name(key: DataKey, attachment_id: uuid.UUID, name: str) -> bytes:
    return encrypt_field(key, name, table=TABLE, column="filename", row_id=attachment_id)


def open_name(key: DataKey | None, row: Attachment) -> str:
    if key is None or row.filename_enc is None:
        raise Gone("this attachment's data was disposed of")
    try:
        return decrypt_field(key, row.filename_enc, table=TABLE, column="filename", row_id=row.id)
    except IntegrityError as exc:
        raise DataIntegrityError("a stored attachment name failed its integrity check") from exc


def attachment_info(row: Attachment, filename: str) -> AttachmentInfo:
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


def hidden(what: str, record_id: uuid.UUID, table: str = "tickets") -> NotFound:
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
        raise hidden("ticket", ticket_id)
    return ticket


async def visible_attachment(
    session: AsyncSession, caller: Any, attachment_id: uuid.UUID
) -> tuple[Attachment, Ticket]:
    row = await session.get(Attachment, attachment_id)
    if row is None:
        raise hidden("attachment", attachment_id, TABLE)
    ticket = await session.get(Ticket, row.ticket_id)
    if (
        ticket is None
        or ticket.deleted_at is not None
        or not policy.can_view_ticket(caller, ticket)
        or (row.is_internal and not policy.can_see_internal(caller.role))
    ):
        raise hidden("attachment", attachment_id, TABLE)
    return row, ticket
