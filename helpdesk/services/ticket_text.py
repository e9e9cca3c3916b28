"""Ticket PHI at rest: title and description sealed under the ticket's data key, and the
keyed blind token index that keyword search uses (never plaintext in the database)."""

from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.crypto import BlindIndex, DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.errors import DataIntegrityError
from models.ticket import TicketSearchToken

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
) -> None:
    """Replace a ticket's search tokens (idempotent)."""
    await session.execute(delete(TicketSearchToken).where(TicketSearchToken.ticket_id == ticket_id))
    for token in sorted(search_tokens(index, title, description)):
        session.add(TicketSearchToken(ticket_id=ticket_id, token=token))
    await session.flush()
