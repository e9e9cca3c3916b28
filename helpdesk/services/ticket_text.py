"""Ticket PHI at rest: title and description sealed under the ticket's data key, and the
keyed blind token index that keyword search uses (never plaintext in the database)."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.crypto import BlindIndex, DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.errors import DataIntegrityError, NotFound
from models.ticket import Ticket, TicketSearchToken

TABLE = "tickets"
_WORD = re.compile(r"[\w]+", re.UNICODE)
MIN_TOKEN = 2
MAX_TOKENS = 500


def seal(key: DataKey, ticket_id: uuid.UUID, column: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    return encrypt_field(key, value, table=TABLE, column=column, row_id=ticket_id)


def open_(key: DataKey, ticket_id: uuid.UUID, column: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    try:
        return decrypt_field(key, blob, table=TABLE, column=column, row_id=ticket_id)
    except IntegrityError as exc:
        raise DataIntegrityError("stored ticket text failed its integrity check") from exc


def words(text: str) -> list[str]:
    """Normalised words of a text (NFKC, case-folded), in order."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [w for w in _WORD.findall(folded) if len(w) >= MIN_TOKEN]


def search_tokens(index: BlindIndex, *texts: str | None) -> set[str]:
    """Keyed digests of the distinct words of the given texts."""
    seen: set[str] = set()
    for text in texts:
        if text:
            for word in words(text):
                seen.add(index.search_token(word))
                if len(seen) >= MAX_TOKENS:
                    return seen
    return seen


def query_tokens(index: BlindIndex, query: str) -> list[str]:
    """The digests a keyword query must all match (AND semantics)."""
    return sorted({index.search_token(w) for w in words(query)})


async def reindex(
    session: AsyncSession,
    index: BlindIndex,
    ticket_id: uuid.UUID,
    title: str | None,
    description: str | None,
    *,
    created_at: datetime | None = None,
) -> None:
    """Replace a ticket's search tokens (idempotent). The ticket row must be flushed: each
    token carries its creation time, the order keyword search reads them in. A ticket being
    created passes `created_at` (it has no tokens yet, and its time is known)."""
    if created_at is None:
        await session.execute(
            delete(TicketSearchToken).where(TicketSearchToken.ticket_id == ticket_id)
        )
    tokens = sorted(search_tokens(index, title, description))
    if tokens:
        if created_at is None:
            created_at = await session.scalar(
                select(Ticket.created_at).where(Ticket.id == ticket_id)
            )
        if created_at is None:
            raise NotFound("ticket not found")
        for token in tokens:
            session.add(
                TicketSearchToken(ticket_id=ticket_id, token=token, ticket_created_at=created_at)
            )
    await session.flush()
