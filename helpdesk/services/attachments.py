"""Attachments: listing and deleting them, and the rules every attachment module keeps.
Upload, scan and download are in `attachment_upload`, `attachment_scan` and
`attachment_download` (shared by the API and the scan activity), the record and who may
see it in `attachment_access`, the process's store and scanner in `attachment_store`.

Rules the attachment modules keep (one place each):
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

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import policy
from helpdesk.errors import Gone, PermissionDenied
from helpdesk.runtime import Runtime
from helpdesk.services import attachment_history
from helpdesk.services.attachment_access import (
    TABLE,
    AttachmentInfo,
    attachment_info,
    now,
    open_name,
    visible_attachment,
    visible_ticket,
)
from helpdesk.services.attachment_history import AttachmentEvent
from helpdesk.services.attachment_store import get_store
from helpdesk.storage.store import ticket_prefix
from models.attachment import Attachment
from models.ticket import Ticket


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
    items = [attachment_info(row, open_name(key, row)) for row in rows]
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


async def delete_attachment(runtime: Runtime, caller: Any, attachment_id: uuid.UUID) -> None:
    """Remove an attachment's bytes and mark it deleted: its uploader or staff only."""
    store = get_store(runtime)
    async with runtime.database.transaction() as session:
        row, _ticket = await visible_attachment(session, caller, attachment_id)
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
        current.deleted_at = now()
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
