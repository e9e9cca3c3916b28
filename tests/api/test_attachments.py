"""Attachments through the API: streamed and counted uploads, content sniffing, sanitised and
encrypted names, quarantine until a real clamd's verdict (run by a real Temporal worker),
access rules, encrypted bytes at rest, integrity on download."""

# The clamd fixtures are imported by name, so test arguments shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.engine import make_url

from activities.notifications import NotifyInput, PushInput
from api.app import create_app, create_asgi_app
from helpdesk import push
from helpdesk.email import FileEmailBackend
from helpdesk.runtime import Runtime
from helpdesk.services import attachment_scan, attachment_store
from helpdesk.services import attachments as service
from helpdesk.sniff import (
    DOCX,
    GIF,
    JPEG,
    PDF,
    PNG,
    SNIFF_BYTES,
    TEXT,
    XLSX,
    ascii_fallback,
    sanitise_filename,
    sniff_mime,
)
from helpdesk.storage.local import LocalEncryptedStore
from models.attachment import Attachment
from models.audit import AuditLog
from models.enums import Role
from models.ticket import NotificationLog, Ticket
from tests.support.attachments import API, make_ticket, upload
from tests.support.clamd import EICAR, EICAR_SIGNATURES, ClamdProcess, clamd, clamd_factory  # noqa: F401
from tests.support.comm import connect, serve
from tests.support.factories import make_user
from workflows.attachment_scan import (
    AttachmentScanWorkflow,
    ScanResult,
    attachment_scan_workflow_id,
    scan_notifications,
)

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
    "890000000d4944415478da63f8cfc0f01f0005000201a0e0f3a10000000049454e44ae426082"
)


def minimal_pdf(text: str = "Hello") -> bytes:
    """A small valid one-page PDF (correct xref offsets)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def store_of(runtime: Runtime) -> LocalEncryptedStore:
    store = attachment_store.get_store(runtime)
    assert isinstance(store, LocalEncryptedStore)
    return store


async def attachment_rows(runtime: Runtime) -> list[Attachment]:
    async with runtime.database.transaction() as session:
        return list(await session.scalars(select(Attachment)))


async def audit_actions(runtime: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
    async with runtime.database.transaction() as session:
        rows = await session.scalars(select(AuditLog).order_by(AuditLog.seq))
        return [(row.action, row.outcome, row.details) for row in rows]


def database_bytes(runtime: Runtime) -> bytes:
    path = Path(make_url(runtime.settings.database_url).database or "")
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# --- fixtures -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def scanning(
    runtime: Runtime, temporal_client: Any, clamd: ClamdProcess
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a real Temporal worker (this test's task queue) and the session's clamd."""
    from workers.worker import run_worker_in_background

    runtime.settings.clamd_address = clamd.tcp_address
    runtime.temporal = temporal_client
    app = create_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        run_worker_in_background(runtime),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield http
    await attachment_store.close(runtime)


async def scan_result(runtime: Runtime, attachment_id: str, timeout: float = 60) -> Any:
    handle = runtime.temporal.get_workflow_handle_for(
        AttachmentScanWorkflow.run, attachment_scan_workflow_id(attachment_id)
    )
    return await asyncio.wait_for(handle.result(), timeout)


# --- scanning, end to end -------------------------------------------------------------------


async def test_eicar_is_found_infected_destroyed_and_refused(
    scanning: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    response = await upload(scanning, patient, ticket_id, EICAR, "invoice.txt")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scan_status"] == "PENDING" and body["mime_type"] == TEXT

    result = await scan_result(runtime, body["id"])
    assert result.scan_status == "INFECTED"
    assert result.signature in EICAR_SIGNATURES
    assert result.uploader_id == patient.id and result.ticket_id == ticket_id

    assert store_of(runtime).files() == []  # bytes destroyed
    download = await scanning.get(f"{API}/attachments/{body['id']}", headers=patient.headers)
    assert download.status_code == 410
    assert download.json()["error"]["details"]["scan_status"] == "INFECTED"
    listed = await scanning.get(f"{API}/tickets/{ticket_id}/attachments", headers=patient.headers)
    assert [item["scan_status"] for item in listed.json()["items"]] == ["INFECTED"]
    scans = [a for a in await audit_actions(runtime) if a[0] == "attachment.scan"]
    assert scans == [
        (
            "attachment.scan",
            "failure",
            {"ticket_id": str(ticket_id), "scan_status": "INFECTED", "signature": result.signature},
        )
    ]


async def test_verdicts_are_announced_to_the_uploader_and_the_agents(
    runtime: Runtime, temporal_client: Any, clamd: ClamdProcess
) -> None:
    """EICAR: the uploader gets exactly one "blocked" email (ticket number, never the file
    name) and the uploader's and an agent's real Socket.IO clients get `attachment.blocked`
    (ids only). A clean file: `attachment.ready` in the ticket room, no email."""
    from workers.worker import run_worker_in_background

    runtime.settings.clamd_address = clamd.tcp_address
    runtime.temporal = temporal_client
    patient = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket_id = await make_ticket(runtime, patient)
    async with runtime.database.transaction() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        number = ticket.number
    canary = f"CanaryLabResult{secrets.token_hex(6)}"
    events = [e.value for e in push.PushEvent]
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with (
        serve(asgi, asgi.other_asgi_app) as server,
        run_worker_in_background(runtime),
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        agent_socket = await connect(server.url, agent.token, events)
        patient_socket = await connect(server.url, patient.token, events)
        try:
            joined = await patient_socket.client.call(
                "join_ticket", {"ticket_id": str(ticket_id)}, timeout=5
            )
            assert joined["ok"] is True
            infected = await upload(http, patient, ticket_id, EICAR, f"{canary}.txt")
            assert infected.status_code == 201, infected.text
            infected_id = infected.json()["id"]
            assert (await scan_result(runtime, infected_id)).scan_status == "INFECTED"

            expected = {
                "event_id": f"attachment:{infected_id}:blocked",
                "ticket_id": str(ticket_id),
                "number": number,
                "attachment_id": infected_id,
            }
            for listener in (agent_socket, patient_socket):
                payload = await listener.wait_for("attachment.blocked", timeout=15)
                assert set(payload) == {*expected, "at"}  # ids only
                assert {k: payload[k] for k in expected} == expected
            assert canary not in str(agent_socket.events + patient_socket.events)

            mailbox = runtime.email
            assert isinstance(mailbox, FileEmailBackend)
            (mail,) = mailbox.messages()
            assert mail["to"] == patient.email
            text = mail["subject"] + mail["body"]
            assert "blocked" in mail["subject"]
            assert f"An attachment you added to ticket #{number} was blocked" in text
            assert canary not in text and ".txt" not in text

            clean = await upload(http, patient, ticket_id, b"all fine\n", f"{canary}-2.txt")
            clean_id = clean.json()["id"]
            assert (await scan_result(runtime, clean_id)).scan_status == "CLEAN"
            ready = await patient_socket.wait_for(
                "attachment.ready", lambda p: p["attachment_id"] == clean_id, timeout=15
            )
            assert ready["event_id"] == f"attachment:{clean_id}:ready"
            assert len(mailbox.messages()) == 1  # a clean file mails nobody
            # The agent did not join the ticket: the ready push is for ticket viewers only.
            await asyncio.sleep(0.3)
            assert "attachment.ready" not in agent_socket.names()
        finally:
            await agent_socket.close()
            await patient_socket.close()
    async with runtime.database.transaction() as session:
        logged = [
            (row.channel, row.kind, row.recipient_id)
            for row in await session.scalars(select(NotificationLog))
        ]
    assert logged == [("email", "attachment_blocked", patient.id)]
    await attachment_store.close(runtime)


def test_scan_notifications_use_stable_keys_and_ids_only() -> None:
    ids = {name: uuid.uuid4() for name in ("attachment", "ticket", "uploader")}
    verdict = ScanResult(
        attachment_id=ids["attachment"],
        ticket_id=ids["ticket"],
        uploader_id=ids["uploader"],
        scan_status="INFECTED",
        is_internal=False,
        signature="Eicar-Test-Signature",
    )
    email, blocked = scan_notifications(verdict)
    assert isinstance(email, NotifyInput) and isinstance(blocked, PushInput)
    assert scan_notifications(verdict) == [email, blocked]  # the same on every replay
    assert email.event_key == blocked.event_id == f"attachment:{ids['attachment']}:blocked"
    assert "Eicar" not in str(email) + str(blocked)
    (ready,) = scan_notifications(verdict.model_copy(update={"scan_status": "CLEAN"}))
    assert isinstance(ready, PushInput) and ready.event is push.PushEvent.ATTACHMENT_READY
    assert ready.event_id == f"attachment:{ids['attachment']}:ready"
    assert scan_notifications(verdict.model_copy(update={"deleted": True})) == []
    assert scan_notifications(verdict.model_copy(update={"scan_status": "PENDING"})) == []


async def test_clean_pdf_is_released_with_identical_bytes(
    scanning: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket_id = await make_ticket(runtime, patient)
    pdf = minimal_pdf("Lab results")
    # The client's header says octet-stream; the content decides.
    response = await upload(
        scanning, patient, ticket_id, pdf, "lab results.pdf", "application/octet-stream"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mime_type"] == PDF
    assert body["size"] == len(pdf) and body["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert response.headers["location"] == f"{API}/attachments/{body['id']}"

    assert (await scan_result(runtime, body["id"])).scan_status == "CLEAN"
    for who in (patient, agent):
        download = await scanning.get(f"{API}/attachments/{body['id']}", headers=who.headers)
        assert download.status_code == 200
        assert download.content == pdf
    assert download.headers["content-type"] == PDF
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["cache-control"] == "no-store"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"lab results.pdf\"; filename*=UTF-8''lab%20results.pdf"
    )
    (stored,) = store_of(runtime).files()
    assert not stored.read_bytes().startswith(b"%PDF")
    actions = [a[:2] for a in await audit_actions(runtime)]
    assert ("attachment.upload", "success") in actions
    assert ("attachment.scan", "success") in actions
    assert actions.count(("attachment.download", "success")) == 2


async def test_clamd_down_keeps_quarantine_until_it_is_back(
    runtime: Runtime,
    temporal_client: Any,
    clamd_factory: type[ClamdProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from workers.worker import run_worker_in_background

    caplog.set_level(logging.DEBUG, logger="temporalio")
    caplog.set_level(logging.INFO, logger="helpdesk")

    scanner = clamd_factory()  # configured, not started: clamd is down
    runtime.settings.clamd_address = scanner.tcp_address
    runtime.temporal = temporal_client
    app = create_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    async with (
        run_worker_in_background(runtime),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        response = await upload(http, patient, ticket_id, b"plain clean text\n", "note.txt")
        assert response.status_code == 201
        attachment_id = response.json()["id"]
        handle = temporal_client.get_workflow_handle_for(
            AttachmentScanWorkflow.run, attachment_scan_workflow_id(attachment_id)
        )
        # Wait until the activity has failed and is being retried with backoff.
        for _ in range(100):
            pending = (await handle.describe()).raw_description.pending_activities
            if pending and pending[0].attempt >= 2:
                break
            await asyncio.sleep(0.1)
        assert pending and pending[0].attempt >= 2
        assert "ScannerUnavailable" in pending[0].last_failure.application_failure_info.type

        download = await http.get(f"{API}/attachments/{attachment_id}", headers=patient.headers)
        assert download.status_code == 409
        assert download.json()["error"]["details"] == {"scan_status": "PENDING"}
        # Its viewers see why it waits.
        listed = await http.get(f"{API}/tickets/{ticket_id}/attachments", headers=patient.headers)
        assert listed.json()["items"][0]["scan_detail"] == "scanner unavailable"
        # Each retry is one line of ours; the SDK logs no traceback at WARNING or above.
        retries = [r for r in caplog.records if r.name == "helpdesk.scan"]
        assert retries and all(r.exc_info is None for r in retries)
        assert all("\n" not in r.getMessage() for r in retries)
        loud = [
            r
            for r in caplog.records
            if r.name.startswith("temporalio") and r.levelno >= logging.WARNING and r.exc_info
        ]
        assert not loud, [r.getMessage() for r in loud]

        scanner.start()
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.scan_status == "CLEAN"
        download = await http.get(f"{API}/attachments/{attachment_id}", headers=patient.headers)
        assert download.status_code == 200 and download.content == b"plain clean text\n"
        listed = await http.get(f"{API}/tickets/{ticket_id}/attachments", headers=patient.headers)
        assert listed.json()["items"][0]["scan_detail"] is None
    await attachment_store.close(runtime)


# --- limits and types (no scanner needed: the upload refuses before any scan) ------------


@pytest.mark.parametrize("settings", [{"max_upload_bytes": 100_000}], indirect=True)
async def test_upload_past_the_limit_is_413_and_nothing_is_stored(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    big = b"a line of text\n" * 10_000  # 150 000 bytes

    response = await upload(client, patient, ticket_id, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    # Streamed without a Content-Length: counted while it arrives.
    boundary = "b0undary"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        for _ in range(30):
            yield b"x" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = await client.post(
        f"{API}/tickets/{ticket_id}/attachments",
        content=body(),
        headers={**patient.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413

    # Just under the limit is fine (framing does not count against the file).
    fits = await upload(client, patient, ticket_id, b"y" * 100_000)
    assert fits.status_code == 201, fits.text
    rows = await attachment_rows(runtime)
    assert [row.size for row in rows] == [100_000]
    assert len(store_of(runtime).files()) == 1  # no temporary file left behind
    denied = [a for a in await audit_actions(runtime) if a[0] == "attachment.upload"]
    assert [a[1] for a in denied].count("denied") == 2


async def test_executable_disguised_as_png_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 40
    response = await upload(client, patient, ticket_id, exe, "kitten.png", "image/png")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unsupported_file_type"
    assert PNG in error["details"]["allowed"]
    assert await attachment_rows(runtime) == []
    assert store_of(runtime).files() == []
    refused = [a for a in await audit_actions(runtime) if a[0] == "attachment.upload"]
    assert refused == [("attachment.upload", "denied", {"why": "type", "sniffed": "executable"})]

    # A real PNG under any name and header is accepted as image/png.
    ok = await upload(client, patient, ticket_id, PNG_1X1, "scan", "application/x-msdownload")
    assert ok.status_code == 201 and ok.json()["mime_type"] == PNG


async def test_malformed_or_missing_file_part_is_422(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    url = f"{API}/tickets/{ticket_id}/attachments"
    no_file = await client.post(
        url, data={"note": "hi"}, files={"other": ("a.txt", b"x")}, headers=patient.headers
    )
    assert no_file.status_code == 422
    not_multipart = await client.post(url, content=b"hello", headers=patient.headers)
    assert not_multipart.status_code == 422
    empty = await upload(client, patient, ticket_id, b"")
    assert empty.status_code == 422
    two = await client.post(
        url, files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))], headers=patient.headers
    )
    assert two.status_code == 422
    cut = await client.post(
        url,
        content=b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
        b"\r\nhello there",
        headers={**patient.headers, "Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert cut.status_code == 422
    assert await attachment_rows(runtime) == []
    assert store_of(runtime).files() == []


# --- names, access, encryption ---------------------------------------------------------------


async def test_filename_is_sanitised_and_stored_encrypted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    hostile = "../../etc/Zeugnis\u202egnp.exe\x07 r\u00e9sum\u00e9?.txt"
    # Raw bytes on the wire (httpx would percent-escape the control character).
    body = (
        b'--zz\r\nContent-Disposition: form-data; name="file"; filename="'
        + hostile.encode()
        + b'"\r\nContent-Type: text/plain\r\n\r\ntext\r\n--zz--\r\n'
    )
    response = await client.post(
        f"{API}/tickets/{ticket_id}/attachments",
        content=body,
        headers={**patient.headers, "Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "Zeugnisgnp.exe r\u00e9sum\u00e9_.txt"
    (row,) = await attachment_rows(runtime)
    assert row.filename_enc is not None and b"Zeugnis" not in row.filename_enc
    assert b"Zeugnis" not in database_bytes(runtime)


async def test_other_end_user_gets_404_everywhere(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime, Role.END_USER)
    other = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, owner)
    created = await upload(client, owner, ticket_id, b"my notes")
    attachment_id = created.json()["id"]

    assert (await upload(client, other, ticket_id, b"sneaky")).status_code == 404
    for method, url in (
        ("GET", f"{API}/tickets/{ticket_id}/attachments"),
        ("GET", f"{API}/attachments/{attachment_id}"),
        ("DELETE", f"{API}/attachments/{attachment_id}"),
        ("GET", f"{API}/attachments/{uuid.uuid4()}"),
    ):
        response = await client.request(method, url, headers=other.headers)
        assert response.status_code == 404, (method, url)
    anonymous = await client.get(f"{API}/attachments/{attachment_id}")
    assert anonymous.status_code == 401
    assert len(await attachment_rows(runtime)) == 1
    denied = [a for a in await audit_actions(runtime) if a[:2] == ("access.denied", "denied")]
    assert len(denied) >= 4


async def test_internal_attachment_is_invisible_to_the_end_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket_id = await make_ticket(runtime, patient)
    internal = await upload(client, agent, ticket_id, b"staff only", is_internal="true")
    public = await upload(client, agent, ticket_id, b"for the patient")
    assert internal.status_code == public.status_code == 201
    assert internal.json()["is_internal"] is True

    seen = await client.get(f"{API}/tickets/{ticket_id}/attachments", headers=patient.headers)
    assert [item["id"] for item in seen.json()["items"]] == [public.json()["id"]]
    staff_view = await client.get(f"{API}/tickets/{ticket_id}/attachments", headers=agent.headers)
    assert len(staff_view.json()["items"]) == 2
    for method in ("GET", "DELETE"):
        hidden = await client.request(
            method, f"{API}/attachments/{internal.json()['id']}", headers=patient.headers
        )
        assert hidden.status_code == 404
    # An end user cannot make one.
    refused = await upload(client, patient, ticket_id, b"x", is_internal="true")
    assert refused.status_code == 403  # refused for the role (issue 11), not the shape
    # Nor delete the agent's public one (visible, but not theirs).
    not_theirs = await client.delete(
        f"{API}/attachments/{public.json()['id']}", headers=patient.headers
    )
    assert not_theirs.status_code == 403


async def test_delete_removes_the_bytes(client: httpx.AsyncClient, runtime: Runtime) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    created = (await upload(client, patient, ticket_id, b"delete me")).json()
    assert len(store_of(runtime).files()) == 1
    gone = await client.delete(f"{API}/attachments/{created['id']}", headers=patient.headers)
    assert gone.status_code == 204
    assert store_of(runtime).files() == []
    (row,) = await attachment_rows(runtime)
    assert row.deleted_at is not None and row.filename_enc is None
    assert (
        await client.get(f"{API}/attachments/{created['id']}", headers=patient.headers)
    ).status_code == 410
    listed = await client.get(f"{API}/tickets/{ticket_id}/attachments", headers=patient.headers)
    assert listed.json()["items"] == []
    again = await client.delete(f"{API}/attachments/{created['id']}", headers=patient.headers)
    assert again.status_code == 410
    assert ("attachment.delete", "success") in [a[:2] for a in await audit_actions(runtime)]

    # Deleting a ticket's attachments (ticket disposal) removes every stored object.
    for _ in range(2):
        await upload(client, patient, ticket_id, b"more")
    assert await service.delete_ticket_attachments(runtime, ticket_id) == 2
    assert store_of(runtime).files() == []


async def mark_clean(runtime: Runtime, attachment_id: str) -> None:
    """The verdict the scan activity records, for tests that are not about scanning."""
    async with runtime.database.transaction() as session:
        row = await session.get(Attachment, uuid.UUID(attachment_id))
        assert row is not None
        row.scan_status = "CLEAN"


async def test_canary_is_absent_from_the_store_and_the_database(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    canary = f"CanaryAttachment{secrets.token_hex(8)}"
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    content = f"Patient notes\n{canary}\nend\n".encode()
    created = await upload(client, patient, ticket_id, content, f"{canary}.txt")
    assert created.status_code == 201
    await mark_clean(runtime, created.json()["id"])
    served = await client.get(f"{API}/attachments/{created.json()['id']}", headers=patient.headers)
    assert served.content == content  # it is there, readable through the API only

    needles = [canary.encode(), canary.lower().encode(), canary.encode("utf-16-le")]
    files = store_of(runtime).files()
    assert files
    for path in files:
        raw = path.read_bytes()
        assert not any(needle in raw for needle in needles), path
    db = database_bytes(runtime)
    assert not any(needle in db for needle in needles)
    for action, _, details in await audit_actions(runtime):
        assert canary not in str(details), action


async def test_flipped_byte_gives_a_clean_error_and_an_audit_row(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    content = b"0123456789abcdef\n" * 20_000  # several segments
    created = (await upload(client, patient, ticket_id, content)).json()
    await mark_clean(runtime, created["id"])
    (path,) = store_of(runtime).files()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x04  # deep inside: the first segments are still intact
    path.write_bytes(bytes(raw))

    response = await client.get(f"{API}/attachments/{created['id']}", headers=patient.headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "integrity_error"
    assert b"0123456789" not in response.content
    failures = [a for a in await audit_actions(runtime) if a[0] == "attachment.integrity_failure"]
    assert failures == [
        (
            "attachment.integrity_failure",
            "failure",
            {"during": "download", "ticket_id": str(ticket_id)},
        )
    ]


async def test_scan_is_idempotent_and_notices_gone_bytes(
    runtime: Runtime, client: httpx.AsyncClient, clamd: ClamdProcess
) -> None:
    runtime.settings.clamd_address = clamd.socket_path  # unix socket this time
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    created = (await upload(client, patient, ticket_id, EICAR + b"\n", "x.txt")).json()
    first = await attachment_scan.scan(runtime, uuid.UUID(created["id"]))
    again = await attachment_scan.scan(runtime, uuid.UUID(created["id"]))
    assert first.scan_status == again.scan_status == "INFECTED"
    assert first.signature in EICAR_SIGNATURES
    scans = [a for a in await audit_actions(runtime) if a[0] == "attachment.scan"]
    assert len(scans) == 1

    ok = (await upload(client, patient, ticket_id, b"fine", "y.txt")).json()
    store_of(runtime).files()[0].unlink()
    from helpdesk.errors import Gone

    with pytest.raises(Gone):
        await attachment_scan.scan(runtime, uuid.UUID(ok["id"]))
    await attachment_store.close(runtime)


async def test_scan_starter_seam_and_resume_after_an_outage(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The ticket workflow plugs in here: the upload hands (ticket, attachment) to the
    configured starter after the row is committed; a failed start keeps the file PENDING
    and `resume_pending_scans` hands it over again."""
    patient = await make_user(runtime, Role.END_USER)
    ticket_id = await make_ticket(runtime, patient)
    calls: list[tuple[uuid.UUID, uuid.UUID, str]] = []

    async def broken(rt: Runtime, ticket: uuid.UUID, attachment: uuid.UUID) -> None:
        raise ConnectionError("temporal is down")

    async def starter(rt: Runtime, ticket: uuid.UUID, attachment: uuid.UUID) -> None:
        async with rt.database.transaction() as session:
            row = await session.get(Attachment, attachment)
            assert row is not None  # committed before the scan is requested
            calls.append((ticket, attachment, row.scan_status))

    runtime.scan_starter = broken
    accepted = await upload(client, patient, ticket_id, b"while temporal is down")
    assert accepted.status_code == 201 and accepted.json()["scan_status"] == "PENDING"

    runtime.scan_starter = starter
    second = await upload(client, patient, ticket_id, b"after it is back")
    second_id = uuid.UUID(second.json()["id"])
    assert calls == [(ticket_id, second_id, "PENDING")]
    calls.clear()
    assert await attachment_scan.resume_pending_scans(runtime) == 2
    assert sorted(c[1] for c in calls) == sorted([uuid.UUID(accepted.json()["id"]), second_id])


# --- pure: sniffing and names ------------------------------------------------------------------


def _ooxml(part: str) -> bytes:
    """The first bytes of an Office Open XML file as Office writes it: a zip whose first
    entries are [Content_Types].xml, _rels/.rels and the main part."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("_rels/.rels", "<Relationships/>")
        archive.writestr(part, "<document/>")
    return buffer.getvalue()[:SNIFF_BYTES]


def test_sniffing_by_magic_bytes() -> None:
    assert sniff_mime(minimal_pdf()) == PDF
    assert sniff_mime(PNG_1X1) == PNG
    assert sniff_mime(b"\xff\xd8\xff\xe0\x00\x10JFIF") == JPEG
    assert sniff_mime(b"GIF89a\x01\x00") == GIF
    assert sniff_mime("Grüße, Dr. Müller\r\n\tok".encode()) == TEXT
    assert sniff_mime("é".encode()[:1]) == TEXT  # a character cut by the sniff window
    assert sniff_mime(_ooxml("word/document.xml")) == DOCX
    assert sniff_mime(_ooxml("xl/workbook.xml")) == XLSX
    assert sniff_mime(_ooxml("ppt/presentation.xml")) is None  # a zip we do not accept
    for refused in (
        b"MZ\x90\x00",  # PE, even if it were printable
        b"MZ this is a dos stub",
        b"\x7fELF\x02\x01\x01",
        b"PK\x03\x04plain zip",
        b"\x00\x01\x02binary",
        b"text with a bell \x07",
        b"\xc3\x28 invalid utf-8 in the middle of a longer text",
    ):
        assert sniff_mime(refused) is None, refused


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("a\x00b\nc\r.txt", "abc.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ('<script>"x".txt', "_script__x_.txt"),
        ("   ..hidden.. ", "hidden"),
        ("CON.txt", "_CON.txt"),
        ("", "attachment"),
        (None, "attachment"),
        ("....", "attachment"),
        ("/", "attachment"),
    ],
)
def test_sanitise_filename(given: str | None, expected: str) -> None:
    assert sanitise_filename(given) == expected


def test_sanitise_filename_caps_length_and_keeps_extension() -> None:
    name = sanitise_filename("é" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= 200
    assert ascii_fallback("résumé \u2013 final.pdf") == "resume final.pdf"
    assert ascii_fallback("日本語.txt") == "attachment.txt"
    assert ascii_fallback("日本語") == "attachment"
