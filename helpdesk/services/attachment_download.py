"""Attachment download: authorised against the ticket, released only after a clean scan
(`attachment_refusals`), and authenticated whole before the first byte is sent."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from helpdesk.crypto import IntegrityError
from helpdesk.errors import DataIntegrityError, Gone
from helpdesk.runtime import Runtime
from helpdesk.services.attachment_access import (
    TABLE,
    AttachmentInfo,
    attachment_info,
    open_name,
    visible_attachment,
)
from helpdesk.services.attachment_refusals import download_refusal
from helpdesk.services.attachment_store import get_store
from helpdesk.storage.store import ObjectMissing


@dataclass(frozen=True, slots=True)
class Download:
    """An authorised, authenticated download: metadata and the plaintext stream."""

    info: AttachmentInfo
    chunks: AsyncIterator[bytes]


async def open_download(runtime: Runtime, caller: Any, attachment_id: uuid.UUID) -> Download:
    """Authorise and authenticate a download, then hand out the plaintext stream.

    The whole object is authenticated (and its SHA-256 checked against the record) before
    the first byte is sent, so a tampered file gives a clean error, never garbled bytes."""
    store = get_store(runtime)
    async with runtime.database.transaction() as session:
        row, ticket = await visible_attachment(session, caller, attachment_id)
        refused = download_refusal(row)
        if refused is not None:
            raise refused
        assert row.storage_key is not None  # a row without bytes was refused above
        key = await runtime.keys.get(session, ticket.data_key_id)
        info = attachment_info(row, open_name(key, row))
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
