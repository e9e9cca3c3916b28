"""A ticket's history is its audit trail for attachments too (issue 11): an entry for each
file uploaded, released by the scan, blocked by it, or deleted; ids and flags only (never
the file's name); entries about internal attachments for staff only."""

# The clamd fixtures are imported by name, so test arguments shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from helpdesk.runtime import Runtime
from helpdesk.services import attachment_scan, attachment_store
from models.attachment import Attachment
from models.enums import Role
from tests.support.attachments import make_ticket, upload
from tests.support.clamd import EICAR, ClamdProcess, clamd  # noqa: F401
from tests.support.factories import make_user

API = "/api/v1"
SECRET_NAME = "Zq7-patient-scan.txt"


async def test_attachment_events_are_in_the_ticket_history(
    client: httpx.AsyncClient, runtime: Runtime, clamd: ClamdProcess
) -> None:
    runtime.settings.clamd_address = clamd.tcp_address
    patient = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket_id = await make_ticket(runtime, patient)
    clean = (await upload(client, patient, ticket_id, b"all fine", SECRET_NAME)).json()
    infected = (await upload(client, patient, ticket_id, EICAR, SECRET_NAME)).json()
    internal = (
        await upload(client, agent, ticket_id, b"staff notes", SECRET_NAME, is_internal="true")
    ).json()
    for created in (clean, infected, internal):
        await attachment_scan.scan(runtime, uuid.UUID(created["id"]))
    await attachment_scan.scan(runtime, uuid.UUID(clean["id"]))  # a retried scan: no second entry
    deleted = await client.delete(f"{API}/attachments/{clean['id']}", headers=patient.headers)
    assert deleted.status_code == 204
    await attachment_store.close(runtime)

    staff = await client.get(f"{API}/tickets/{ticket_id}/history", headers=agent.headers)
    assert staff.status_code == 200
    entries = [(e["action"], e["changes"], e["actor_id"]) for e in staff.json()]
    patient_id, agent_id = str(patient.id), str(agent.id)
    assert sorted(entries, key=str) == sorted(
        [
            ("attachment_uploaded", {"attachment_id": clean["id"], "internal": False}, patient_id),
            (
                "attachment_uploaded",
                {"attachment_id": infected["id"], "internal": False},
                patient_id,
            ),
            ("attachment_uploaded", {"attachment_id": internal["id"], "internal": True}, agent_id),
            ("attachment_released", {"attachment_id": clean["id"], "internal": False}, None),
            ("attachment_blocked", {"attachment_id": infected["id"], "internal": False}, None),
            ("attachment_released", {"attachment_id": internal["id"], "internal": True}, None),
            ("attachment_deleted", {"attachment_id": clean["id"], "internal": False}, patient_id),
        ],
        key=str,
    )
    assert "Zq7" not in staff.text and "text/plain" not in staff.text

    own = await client.get(f"{API}/tickets/{ticket_id}/history", headers=patient.headers)
    assert internal["id"] not in own.text  # internal attachments' entries: staff only
    assert len(own.json()) == 5

    # Each entry was written with its attachment's change (same instant, same transaction).
    by_key = {(e["action"], e["changes"]["attachment_id"]): e["at"] for e in staff.json()}
    async with runtime.database.transaction() as session:
        row = await session.scalar(
            select(Attachment).where(Attachment.id == uuid.UUID(clean["id"]))
        )
    assert row is not None and row.scanned_at is not None and row.deleted_at is not None
    released_at = by_key[("attachment_released", clean["id"])]
    deleted_at = by_key[("attachment_deleted", clean["id"])]
    assert released_at.startswith(row.scanned_at.isoformat()[:19])
    assert deleted_at.startswith(row.deleted_at.isoformat()[:19])
