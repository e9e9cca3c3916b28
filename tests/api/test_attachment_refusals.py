"""A download refused because of the attachment's state is audited (issue 11): still being
scanned (409), found infected or deleted (410). No scanner runs here: without Temporal the
upload stays quarantined (PENDING), exactly as while a scan is pending."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select, update

from helpdesk.runtime import Runtime
from models.attachment import Attachment
from models.audit import AuditLog
from models.enums import Role, ScanStatus
from tests.support.attachments import API, make_ticket, upload
from tests.support.factories import make_user


async def _download_refusals(runtime: Runtime) -> list[AuditLog]:
    async with runtime.database.read() as session:
        return list(
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.action == "attachment.download", AuditLog.outcome == "denied")
                .order_by(AuditLog.seq)
            )
        )


async def test_refused_downloads_are_audited(client: httpx.AsyncClient, runtime: Runtime) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    created = await upload(client, patient, ticket_id, b"lab results\n", "results.txt")
    assert created.status_code == 201, created.text
    attachment_id = created.json()["id"]

    pending = await client.get(f"{API}/attachments/{attachment_id}", headers=patient.headers)
    assert pending.status_code == 409
    assert pending.json()["error"]["details"] == {"scan_status": "PENDING"}
    (row,) = await _download_refusals(runtime)
    assert (row.actor_id, row.table_name, row.record_id) == (
        patient.id,
        "attachments",
        attachment_id,
    )
    assert row.details == {
        "why": "quarantined",
        "scan_status": "PENDING",
        "ticket_id": str(ticket_id),
    }
    assert row.ip == "127.0.0.1" and row.request_id

    async with runtime.database.transaction() as session:
        await session.execute(
            update(Attachment)
            .where(Attachment.id == uuid.UUID(attachment_id))
            .values(scan_status=ScanStatus.INFECTED.value)
        )
    infected = await client.get(f"{API}/attachments/{attachment_id}", headers=patient.headers)
    assert infected.status_code == 410
    assert [r.details["why"] for r in await _download_refusals(runtime)] == [
        "quarantined",
        "infected",
    ]
    assert "results.txt" not in str([r.details for r in await _download_refusals(runtime)])
