"""A ticket's history entries, written by `helpdesk.services.tickets` (one shape for creation
and every later change, as Core inserts: history rows are never changed), and the sealing
of a change's note (PHI: encrypted under the ticket's key, bound to its entry)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.crypto import decrypt_field, encrypt_field
from helpdesk.rules.contracts import Actor
from models.base import Base
from models.ticket import Ticket, TicketHistory

HISTORY_TABLE = "ticket_history"


async def insert_rows(session: AsyncSession, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` into `model`'s table as one Core statement (column defaults apply),
    in the caller's transaction; nothing when there are none."""
    if rows:
        await session.execute(insert(cast(Table, model.__table__)), rows)


async def write_history(
    session: AsyncSession,
    ticket: Ticket,
    event_key: str,
    actor: Actor,
    action: str,
    changes: dict[str, Any],
    now: datetime,
) -> None:
    """A ticket's history entry: one shape for creation and every later change (a Core
    insert: history rows are never changed)."""
    row = {"ticket_id": ticket.id, "event_key": event_key, "at": now, "actor_id": actor.id}
    await insert_rows(session, TicketHistory, [{**row, "action": action, "changes": changes}])


def seal_note(key: Any, ticket_id: uuid.UUID, event_key: str, note: str) -> str:
    blob = encrypt_field(
        key, note, table=HISTORY_TABLE, column="note", row_id=f"{ticket_id}:{event_key}"
    )
    return base64.b64encode(blob).decode()


def open_note(key: Any, ticket_id: uuid.UUID, event_key: str, sealed: str) -> str | None:
    try:
        return decrypt_field(
            key,
            base64.b64decode(sealed),
            table=HISTORY_TABLE,
            column="note",
            row_id=f"{ticket_id}:{event_key}",
        )
    except Exception:  # integrity failure or a shredded key: never garbled text
        return None
