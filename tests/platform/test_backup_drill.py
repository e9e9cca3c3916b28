"""The disaster-recovery drill on the real stack (issue 14).

Tickets in every state, with public replies, internal notes and attachments, are made
through the API on a real Temporal dev server with a real worker. Then: a backup, and the
disaster: the database, the attachment store AND the Temporal server's data are destroyed.
Then: restore into the same (now empty) paths, a fresh Temporal server with empty data, the
reconciler. Every ticket reads back; the audit chain is intact; each open ticket has its
workflow again, with SLA clocks that come from the database (the same clocks, not a fresh
SLA); no email is sent twice; and the restored site takes new commands.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from helpdesk.backup.create import create_backup
from helpdesk.backup.restore import restore_backup
from helpdesk.services import ticket_reconcile
from helpdesk.temporal import SEARCH_ATTRIBUTES, connect, ticket_workflow_id
from models.enums import Role
from models.ticket import NotificationLog, Ticket
from tests.conftest import free_port
from tests.support.backup import add_attachment, open_runtime, read_attachment
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api
from workflows.ticket import TicketWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.slow]


async def start_temporal(db_file: Path) -> WorkflowEnvironment:
    """A Temporal dev server persisting to `db_file` (its whole state)."""
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        ip="127.0.0.1",
        port=free_port(),
        ui=False,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=["--db-filename", str(db_file)],
    )


async def settled(runtime, mail: Path) -> tuple[int, str]:
    """Wait until the notification log and the mailbox stop changing."""
    last: tuple[int, str] | None = None
    for _ in range(60):
        async with runtime.database.transaction() as session:
            count = await session.scalar(select(func.count()).select_from(NotificationLog))
        now = (int(count or 0), mail.read_text() if mail.exists() else "")
        if now == last:
            return now
        last = now
        await asyncio.sleep(1.0)
    raise AssertionError("notifications never settled")


class RecordingPublisher:
    """Socket.IO pushes as (event, event_id), instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def publish(self, event: str, payload: dict[str, Any], rooms: list[str]) -> None:
        self.sent.append((event, str(payload.get("event_id"))))

    async def disconnect_session(self, session_id: uuid.UUID) -> None:
        return None

    async def aclose(self) -> None:
        return None


def clocks(state: Any) -> dict[str, Any]:
    """The SLA state that must survive: clocks, fired steps, auto-close (not the policy's
    representation)."""
    sla = state.sla
    assert sla is not None
    return {
        "clocks": {k.value: c.model_dump() for k, c in sla.clocks.items()},
        "fired": sorted(sla.fired),
        "auto_close_at": sla.auto_close_at,
        "closed": sla.closed,
    }


async def test_disaster_recovery_drill(runtime, settings, tmp_path):
    temporal_db = tmp_path / "temporal-1.db"
    env = await start_temporal(temporal_db)
    client = await connect(settings, address=env.client.service_client.config.target_host)
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    mail = settings.email_file_path
    assert mail is not None
    before_pushes = RecordingPublisher()
    runtime.push = before_pushes
    made: dict[str, dict[str, Any]] = {}
    try:
        async with ticket_api(runtime, client) as http:
            for status in ("OPEN", "IN_PROGRESS", "RESOLVED", "CLOSED"):
                ticket = await create_ticket(
                    http, requester, title=f"Drill {status}", description=f"about {status}"
                )
                tid = ticket["id"]
                for body, internal, who in (
                    ("Looking into it", False, agent),
                    ("Internal: check the logs", True, agent),
                    ("Thanks!", False, requester),
                ):
                    reply = await http.post(
                        f"/api/v1/tickets/{tid}/comments",
                        json={"body": body, "is_internal": internal},
                        headers=who.headers,
                    )
                    assert reply.status_code == 201, reply.text
                path = {
                    "OPEN": [],
                    "IN_PROGRESS": ["IN_PROGRESS"],
                    "RESOLVED": ["IN_PROGRESS", "RESOLVED"],
                    "CLOSED": ["IN_PROGRESS", "RESOLVED", "CLOSED"],
                }[status]
                for step in path:
                    changed = await set_status(http, agent, tid, step)
                    assert changed.status_code == 200, changed.text
                async with runtime.database.transaction() as session:
                    row = await session.get(Ticket, uuid.UUID(tid))
                assert row is not None
                attachment = await add_attachment(
                    runtime, row, requester.id, f"scan for {status}".encode() * 1000
                )
                made[status] = {"id": tid, "attachment": attachment}

            await settled(runtime, mail)
            for status, item in made.items():
                got = await http.get(f"/api/v1/tickets/{item['id']}", headers=agent.headers)
                assert got.status_code == 200, (status, got.text)
                item["view"] = got.json()
                listed = await http.get(
                    f"/api/v1/tickets/{item['id']}/comments", headers=agent.headers
                )
                item["comments"] = listed.json()
                item["bytes"] = await read_attachment(runtime, item["attachment"])
                if status != "CLOSED":
                    handle = client.get_workflow_handle(ticket_workflow_id(item["id"]))
                    item["sla"] = clocks(await handle.query(TicketWorkflow.state))
            # An online backup, the worker still running.
            backup = await create_backup(settings, out_dir=tmp_path / "backups")
            notified, mailbox = await settled(runtime, mail)
    finally:
        await env.shutdown()
    await runtime.close()

    # --- the disaster ------------------------------------------------------------------
    for path in settings.var_dir.glob("helpdesk.db*"):
        path.unlink()
    shutil.rmtree(settings.attachments_path)
    for path in tmp_path.glob("temporal-1.db*"):
        path.unlink()

    # --- recovery ----------------------------------------------------------------------
    await restore_backup(settings, backup.path)
    restored = open_runtime(settings)
    after_pushes = RecordingPublisher()
    restored.push = after_pushes
    env = await start_temporal(tmp_path / "temporal-2.db")
    try:
        client = await connect(settings, address=env.client.service_client.config.target_host)
        restored.temporal = client
        async with restored.database.transaction() as session:
            assert (await restored.audit.verify(session)).ok
        async with ticket_api(restored, client) as http:
            started = await ticket_reconcile.reconcile_workflows(restored, grace_seconds=0)
            assert started == 3  # OPEN, IN_PROGRESS, RESOLVED; never the closed one
            for status, item in made.items():
                handle = client.get_workflow_handle(ticket_workflow_id(item["id"]))
                if status == "CLOSED":
                    with pytest.raises(RPCError):
                        await handle.describe()
                else:
                    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
                    state = await handle.query(TicketWorkflow.state)
                    assert state.status.value == status
                    # The clocks as they were before the disaster, not a fresh SLA.
                    assert clocks(state) == item["sla"], status
                got = await http.get(f"/api/v1/tickets/{item['id']}", headers=agent.headers)
                assert got.status_code == 200
                view = got.json()
                assert view["title"] == item["view"]["title"] == f"Drill {status}"
                assert view["status"] == status
                listed = await http.get(
                    f"/api/v1/tickets/{item['id']}/comments", headers=agent.headers
                )
                assert listed.json() == item["comments"]
                assert await read_attachment(restored, item["attachment"]) == item["bytes"]
            # The started workflows ran their start-up side effects: nothing sent twice.
            assert await settled(restored, mail) == (notified, mailbox)
            # A workflow started for a restored row announces nothing: only the workflow
            # that wrote a ticket announces it (the started ones ran their first tasks by
            # now: each answered the query above).
            assert before_pushes.sent
            await asyncio.sleep(1.0)
            assert after_pushes.sent == []
            # A second reconciliation starts nothing; the restored site takes commands.
            assert await ticket_reconcile.reconcile_workflows(restored, grace_seconds=0) == 0
            moved = await set_status(http, agent, made["OPEN"]["id"], "IN_PROGRESS")
            assert moved.status_code == 200, moved.text
            async with restored.database.transaction() as session:
                assert (await restored.audit.verify(session)).ok
    finally:
        await env.shutdown()
        await restored.close()


async def test_resume_workflows_reaches_live_tickets_older_than_the_reconcile_window(
    runtime, temporal_client
):
    """After a restore every live ticket needs its workflow, not only those of the worker
    reconciler's window (72 hours): `helpdesk backup resume-workflows` looks back without
    limit, and the clocks start at the ticket's creation, not at the reconciliation."""
    from datetime import UTC, datetime, timedelta

    from helpdesk.backup.commands import ALL_TICKETS_HOURS
    from tests.support.ticket_rows import make_ticket

    requester = await make_user(runtime, Role.END_USER)
    created = datetime.now(UTC) - timedelta(days=10)
    old = await make_ticket(runtime, requester_id=requester.id, created_at=created)
    async with ticket_api(runtime, temporal_client):
        assert await ticket_reconcile.reconcile_workflows(runtime, grace_seconds=0) == 0
        started = await ticket_reconcile.reconcile_workflows(
            runtime, grace_seconds=0, window_hours=ALL_TICKETS_HOURS
        )
        assert started == 1
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(old.id))
        state = await handle.query(TicketWorkflow.state)
        assert state.sla is not None
        for clock in state.sla.clocks.values():
            assert clock.started_at == created
