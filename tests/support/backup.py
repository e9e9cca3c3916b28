"""Helpers of the backup tests: data with attachments, a second (empty) site that shares
the first one's secrets, and reading tickets back."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from api.app import prepare_runtime
from helpdesk.crypto import encrypt_field
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import ticket_text
from helpdesk.services.attachment_store import get_store
from helpdesk.settings import Settings
from helpdesk.storage.store import storage_key_for
from models.attachment import Attachment
from models.enums import ScanStatus
from models.ticket import Ticket
from tests.conftest import make_settings


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def add_attachment(
    runtime: Runtime, ticket: Ticket, uploader_id: uuid.UUID, data: bytes
) -> Attachment:
    """An attachment stored as the upload path stores it (sealed under the ticket's key)."""
    attachment_id = uuid.uuid4()
    key_name = storage_key_for(ticket.id, attachment_id)
    async with runtime.database.transaction() as session:
        key = await runtime.keys.get(session, ticket.data_key_id)
    stored = await get_store(runtime).put(
        key_name, _chunks(data), key=key, attachment_id=attachment_id
    )
    async with runtime.database.transaction() as session:
        row = Attachment(
            id=attachment_id,
            ticket_id=ticket.id,
            uploader_id=uploader_id,
            filename_enc=encrypt_field(
                key, "scan.txt", table="attachments", column="filename", row_id=attachment_id
            ),
            mime_type="text/plain",
            size=stored.size,
            sha256=stored.sha256,
            storage_key=key_name,
            scan_status=ScanStatus.CLEAN.value,
        )
        session.add(row)
    return row


def second_site(source: Settings, root: Path, **overrides: object) -> Settings:
    """Settings of an empty site (no database, no attachments) holding the same secrets,
    as a disaster-recovery site gets them from the secret store."""
    var = root / "dr-var"
    var.mkdir(parents=True)
    shutil.copy(source.var_dir / "secrets.json", var / "secrets.json")
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{var / 'helpdesk.db'}",
        "temporal_task_queue": source.temporal_task_queue,
    }
    values.update(overrides)
    return make_settings(var, **values)


async def read_title(runtime: Runtime, ticket_id: uuid.UUID) -> str | None:
    async with runtime.database.transaction() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        key = await runtime.keys.get(session, ticket.data_key_id)
        return ticket_text.open_(key, ticket.id, "title", ticket.title_enc)


async def read_attachment(runtime: Runtime, attachment: Attachment) -> bytes:
    async with runtime.database.transaction() as session:
        row = await session.get(Attachment, attachment.id)
        assert row is not None and row.storage_key is not None
        ticket = await session.get(Ticket, row.ticket_id)
        assert ticket is not None
        key = await runtime.keys.get(session, ticket.data_key_id)
    data = bytearray()
    stream = await get_store(runtime).get(row.storage_key, key=key, attachment_id=row.id)
    async for chunk in stream:
        data += chunk
    assert hashlib.sha256(data).hexdigest() == row.sha256
    return bytes(data)


def open_runtime(settings: Settings) -> Runtime:
    return prepare_runtime(build_runtime(settings))
