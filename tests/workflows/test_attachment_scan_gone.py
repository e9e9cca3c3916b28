"""An attachment that no longer exists ends its scan cleanly (issue 11): the scan workflow
COMPLETES with a ``gone`` outcome instead of FAILING "attachment bytes are gone".

The case: the ticket is deleted (its key and every attachment's bytes destroyed) while the
attachment still waits for clamd. A live attachment whose bytes vanished still fails its
scan (tests/api/test_attachments.py, `test_scan_is_idempotent_and_notices_gone_bytes`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from api.app import create_app
from helpdesk.runtime import Runtime
from helpdesk.services import attachment_store, ticket_commands
from models.enums import Role
from tests.support.attachments import make_ticket, upload
from tests.support.clamd import ClamdProcess, clamd_factory  # noqa: F401
from tests.support.factories import make_user
from workflows.attachment_scan import AttachmentScanWorkflow, attachment_scan_workflow_id

pytestmark = pytest.mark.temporal


async def test_a_scan_whose_ticket_was_deleted_completes_as_gone(
    runtime: Runtime,
    temporal_client: Any,
    clamd_factory: type[ClamdProcess],  # noqa: F811
) -> None:
    from workers.worker import run_worker_in_background

    scanner = clamd_factory()  # configured, not started: the scan waits and retries
    runtime.settings.clamd_address = scanner.tcp_address
    runtime.temporal = temporal_client
    app = create_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    patient = await make_user(runtime, Role.END_USER)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    ticket_id = await make_ticket(runtime, patient)
    async with (
        run_worker_in_background(runtime),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        response = await upload(http, patient, ticket_id, b"plain text\n", "note.txt")
        assert response.status_code == 201
        attachment_id = response.json()["id"]
        handle = temporal_client.get_workflow_handle_for(
            AttachmentScanWorkflow.run, attachment_scan_workflow_id(attachment_id)
        )
        for _ in range(100):  # the scan is retrying: clamd is down
            pending = (await handle.describe()).raw_description.pending_activities
            if pending and pending[0].attempt >= 2:
                break
            await asyncio.sleep(0.1)
        await ticket_commands.dispose(runtime, admin.id, Role.ADMINISTRATOR.value, ticket_id)

        result = await asyncio.wait_for(handle.result(), 60)
        assert result.deleted and result.outcome == "gone"
        assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
    await attachment_store.close(runtime)
