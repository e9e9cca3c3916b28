"""Ticket history entries about attachments: the ticket's audit trail shows each file
uploaded, released by the virus scan, blocked by it, or deleted.

An entry holds ids and flags only (attachment id, internal or not), never the file's name,
type or content: history is shown to the requester. Entries about an internal attachment
are for staff only, like internal notes' (`policy.history_entry_visible`). Each entry is
written in the transaction of the attachment's own change, keyed by attachment and event,
so a retried scan activity writes it once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.attachment import Attachment
from models.ticket import TicketHistory


class AttachmentEvent(StrEnum):
    UPLOADED = "attachment_uploaded"
    RELEASED = "attachment_released"  # the scan found it clean: downloadable from now on
    BLOCKED = "attachment_blocked"  # the scan found malware: its bytes are destroyed
    DELETED = "attachment_deleted"


async def record(
    session: AsyncSession,
    row: Attachment,
    event: AttachmentEvent,
    *,
    actor_id: uuid.UUID | None,
    at: datetime,
) -> None:
    """Add the entry for `event` of `row` to the caller's transaction (once per event)."""
    key = f"{event.value}:{row.id}"
    exists = await session.scalar(
        select(TicketHistory.id).where(
            TicketHistory.ticket_id == row.ticket_id, TicketHistory.event_key == key
        )
    )
    if exists is not None:
        return
    session.add(
        TicketHistory(
            ticket_id=row.ticket_id,
            event_key=key,
            at=at,
            actor_id=actor_id,
            action=event.value,
            changes={"attachment_id": str(row.id), "internal": row.is_internal},
        )
    )
