"""Ticket tags at rest: sealed like the rest of a ticket's text, found by a keyed blind token.

Tags are free text that requesters and agents type, so a diagnosis or a name can land in
one: each tag is stored as a ``ticket_tags`` row of
- ``token``: HMAC of the normalised tag under the blind-index key (exact-match filtering:
  the list looks the token up, never the text);
- ``tag_sealed``: the tag, AES-256-GCM under the ticket's data key (base64), with associated
  data binding it to its ticket and token, so a ciphertext moved to another row fails to
  open, and deleting the ticket's key shreds its tags with its text.
The history keeps a tag change sealed the same way (`seal_change`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.crypto import BlindIndex, DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.errors import DataIntegrityError
from models.ticket import TicketTag

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime

TABLE = "ticket_tags"
HISTORY_TABLE = "ticket_history"
MAX_TAG_LENGTH = 50
# Between "token:sealed" items when the list packs a ticket's tags into one column.
PACK_SEPARATOR = "\x1f"


def normalise_tag(tag: str) -> str:
    """The form a tag is kept and matched in (trimmed, case-folded): writers and filters
    share it."""
    return tag.strip().casefold()[:MAX_TAG_LENGTH]


def normalised(tags: Iterable[str]) -> list[str]:
    return sorted({normalise_tag(t) for t in tags})


def tag_token(index: BlindIndex, tag: str) -> str:
    """The blind token of a tag (exact match after normalisation)."""
    return index.digest("tag", normalise_tag(tag))[:32]


def analytics_tokens(runtime: Runtime) -> frozenset[str]:
    """The blind tokens of the tags administrators approved for analytics and exports
    (`HELPDESK_ANALYTICS_EXPORT_TAGS`): the only tags the analytics rollups count under."""
    approved = {normalise_tag(t) for t in runtime.settings.analytics_export_tags}
    return frozenset(tag_token(runtime.blind_index, t) for t in approved if t)


def _row_id(ticket_id: uuid.UUID, token: str) -> str:
    return f"{ticket_id}:{token}"


def seal_tag(key: DataKey, ticket_id: uuid.UUID, token: str, tag: str) -> str:
    blob = encrypt_field(key, tag, table=TABLE, column="tag", row_id=_row_id(ticket_id, token))
    return base64.b64encode(blob).decode()


def open_tag(key: DataKey, ticket_id: uuid.UUID, token: str, sealed: str) -> str:
    try:
        return decrypt_field(
            key,
            base64.b64decode(sealed),
            table=TABLE,
            column="tag",
            row_id=_row_id(ticket_id, token),
        )
    except (IntegrityError, ValueError) as exc:
        raise DataIntegrityError("a stored ticket tag failed its integrity check") from exc


def rows_for(
    index: BlindIndex, key: DataKey, ticket_id: uuid.UUID, tags: Iterable[str]
) -> list[TicketTag]:
    """The rows of a ticket's tags (normalised, deduplicated)."""
    rows = []
    for tag in normalised(tags):
        token = tag_token(index, tag)
        rows.append(
            TicketTag(
                ticket_id=ticket_id, token=token, tag_sealed=seal_tag(key, ticket_id, token, tag)
            )
        )
    return rows


async def read(session: AsyncSession, key: DataKey, ticket_id: uuid.UUID) -> list[str]:
    """A ticket's tags, opened, sorted."""
    rows = await session.execute(
        select(TicketTag.token, TicketTag.tag_sealed).where(TicketTag.ticket_id == ticket_id)
    )
    return sorted(open_tag(key, ticket_id, token, sealed) for token, sealed in rows)


async def replace(
    session: AsyncSession,
    index: BlindIndex,
    key: DataKey,
    ticket_id: uuid.UUID,
    tags: Iterable[str],
) -> list[str]:
    """Set a ticket's tags (in the caller's transaction); the normalised new tags."""
    await session.execute(delete(TicketTag).where(TicketTag.ticket_id == ticket_id))
    rows = rows_for(index, key, ticket_id, tags)
    session.add_all(rows)
    return normalised(tags)


def unpack(key: DataKey | None, ticket_id: uuid.UUID, packed: str | None) -> list[str]:
    """The tags of a list row, packed as ``token:sealed`` items (none without a key)."""
    if not packed or key is None:
        return []
    tags = []
    for item in packed.split(PACK_SEPARATOR):
        token, _, sealed = item.partition(":")
        tags.append(open_tag(key, ticket_id, token, sealed))
    return sorted(tags)


# --- the history of a tag change ---------------------------------------------------------


def seal_change(
    key: DataKey, ticket_id: uuid.UUID, event_key: str, old: list[str], new: list[str]
) -> dict[str, Any]:
    """A history entry's ``tags`` change, sealed: {"sealed": base64}."""
    blob = encrypt_field(
        key,
        json.dumps({"old": old, "new": new}),
        table=HISTORY_TABLE,
        column="tags",
        row_id=f"{ticket_id}:{event_key}",
    )
    return {"sealed": base64.b64encode(blob).decode()}


def open_change(
    key: DataKey | None, ticket_id: uuid.UUID, event_key: str, change: Any
) -> dict[str, Any]:
    """The ``tags`` change of a history entry as {"old": [...], "new": [...]}; just
    {"changed": true} when it cannot be opened (the ticket's key was shredded)."""
    if not isinstance(change, dict) or "sealed" not in change:
        return change if isinstance(change, dict) else {"changed": True}
    if key is None:
        return {"changed": True}
    try:
        plain = decrypt_field(
            key,
            base64.b64decode(change["sealed"]),
            table=HISTORY_TABLE,
            column="tags",
            row_id=f"{ticket_id}:{event_key}",
        )
    except (IntegrityError, ValueError):
        return {"changed": True}
    opened: dict[str, Any] = json.loads(plain)
    return opened
