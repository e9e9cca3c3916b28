"""Temporal is a trust boundary (issue 11): the worker obeys only commands the API issued.

Forgeries sent the way an attacker who reaches the Temporal frontend would send them:
- a plaintext update with the real `temporal` CLI (refused by the codec: not encrypted);
- an update encoded through the codec but without the command key (refused by the guard:
  no MAC), one signed under another key, and a forged start;
- a plaintext signal (dropped; the ticket keeps working).
Each leaves the ticket unchanged, nothing in its history, and a `security.command_refused`
audit row (ids and reason codes only).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from helpdesk import command_auth
from helpdesk.metrics import COMMANDS_REFUSED
from helpdesk.rules.contracts import Actor, StatusChange, TicketConfig, TicketInput, TicketState
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from helpdesk.temporal import data_converter, ticket_workflow_id
from models.audit import AuditLog
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api
from workflows.ticket import TicketWorkflow

pytestmark = pytest.mark.temporal


def _cli() -> str:
    return shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")


def _refused_count(reason: str) -> float:
    total = 0.0
    for metric in COMMANDS_REFUSED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("reason") == reason:
                total += sample.value
    return total


async def _refusals(runtime: Runtime, tid: str, count: int = 1) -> list[AuditLog]:
    """The `security.command_refused` rows of the ticket, once `count` are written."""
    deadline = time.monotonic() + 20
    while True:
        async with runtime.database.transaction() as session:
            rows = list(
                await session.scalars(
                    select(AuditLog).where(
                        AuditLog.action == "security.command_refused",
                        AuditLog.record_id == tid,
                    )
                )
            )
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def _updates_in_history(client: Client, tid: str) -> int:
    history = await client.get_workflow_handle(ticket_workflow_id(tid)).fetch_history()
    return sum(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        for e in history.events
    )


async def _unsigned_client(temporal_server: str, settings: Settings) -> Client:
    """A client holding the payload codec (as the codec endpoint's user could encode
    through it) but not the command key."""
    return await Client.connect(
        temporal_server,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )


def _forged_status(admin_id: uuid.UUID) -> StatusChange:
    return StatusChange(
        request_id=f"r-{uuid.uuid4()}",
        actor=Actor(id=admin_id, role="ADMINISTRATOR", ip="6.6.6.6"),
        status="IN_PROGRESS",
    )


async def test_a_plaintext_update_from_the_cli_is_refused_and_audited(
    runtime: Runtime, temporal_client: Client, temporal_server: str, settings: Settings
) -> None:
    requester = await make_user(runtime, Role.END_USER)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    before_metric = _refused_count("plaintext")
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        before = await _updates_in_history(temporal_client, tid)
        forged = {
            "request_id": "x",
            "actor": {"id": str(admin.id), "role": "ADMINISTRATOR", "ip": "6.6.6.6"},
            "status": "IN_PROGRESS",
        }
        command = [
            _cli(),
            "workflow",
            "update",
            "execute",
            "--address",
            temporal_server,
            "--namespace",
            settings.temporal_namespace,
            "-w",
            ticket_workflow_id(tid),
            "--name",
            "change_status",
            "--input",
            json.dumps(forged),
        ]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, done.stdout
        # The ticket is unchanged, and nothing of the forgery entered its history.
        got = await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)
        assert got.json()["status"] == "OPEN"
        assert await _updates_in_history(temporal_client, tid) == before
        (row,) = await _refusals(runtime, tid)
        assert row.outcome == "denied"
        assert row.details["kind"] == "payload" and row.details["reason"] == "plaintext"
        assert row.details["workflow_id"] == ticket_workflow_id(tid)
        assert "6.6.6.6" not in json.dumps(row.details)  # nothing of the payload
        assert _refused_count("plaintext") > before_metric
        # The ticket still works for real commands.
        agent = await make_user(runtime, Role.SUPPORT_AGENT)
        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200


async def test_an_update_encoded_through_the_codec_without_the_key_is_refused(
    runtime: Runtime, temporal_client: Client, temporal_server: str, settings: Settings
) -> None:
    requester = await make_user(runtime, Role.END_USER)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    forger = await _unsigned_client(temporal_server, settings)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        before = await _updates_in_history(temporal_client, tid)
        handle = forger.get_workflow_handle(ticket_workflow_id(tid))
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await handle.execute_update(TicketWorkflow.change_status, _forged_status(admin.id))  # type: ignore[unused-coroutine]
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "CommandRefused"

        # Signed, but under another key (a guessed or stolen-elsewhere key): refused too.
        other = dataclasses.replace(
            data_converter(settings),
        )
        wrong = await Client.connect(
            temporal_server,
            namespace=settings.temporal_namespace,
            data_converter=other,
            interceptors=[command_auth.CommandSigner(b"not the command key")],
        )
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await wrong.get_workflow_handle(ticket_workflow_id(tid)).execute_update(  # type: ignore[unused-coroutine]
                TicketWorkflow.change_status, _forged_status(admin.id)
            )
        assert getattr(caught.value.cause, "type", None) == "CommandRefused"

        got = await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)
        assert got.json()["status"] == "OPEN"
        assert await _updates_in_history(temporal_client, tid) == before
        rows = await _refusals(runtime, tid, count=2)
        reasons = sorted(r.details["reason"] for r in rows)
        assert reasons == ["bad_mac", "unsigned"]
        for r in rows:
            assert r.details["kind"] == "update" and r.details["command"] == "change_status"
            # The claimed actor is kept as a claim, never as the row's actor.
            assert r.details["claimed_actor_id"] == str(admin.id)
            assert r.actor_id != admin.id


async def test_a_forged_start_is_refused_and_a_plaintext_signal_dropped(
    runtime: Runtime, temporal_client: Client, temporal_server: str, settings: Settings
) -> None:
    requester = await make_user(runtime, Role.END_USER)
    forger = await _unsigned_client(temporal_server, settings)
    fake = uuid.uuid4()
    async with ticket_api(runtime, temporal_client) as http:
        state = TicketState(ticket_id=fake, number=999_999, requester_id=requester.id)
        handle = await forger.start_workflow(
            TicketWorkflow.run,
            TicketInput(state=state, config=TicketConfig()),
            id=ticket_workflow_id(fake),
            task_queue=settings.temporal_task_queue,
        )
        with pytest.raises(WorkflowFailureError) as caught:
            async with asyncio.timeout(30):
                await handle.result()
        assert getattr(caught.value.cause, "type", None) == "CommandRefused"
        (row,) = await _refusals(runtime, str(fake))
        assert row.details["kind"] == "start" and row.details["reason"] == "unsigned"

        # A plaintext signal (the CLI's): dropped; the ticket is not bricked by it.
        tid = (await create_ticket(http, requester))["id"]
        command = [
            _cli(),
            "workflow",
            "signal",
            "--address",
            temporal_server,
            "--namespace",
            settings.temporal_namespace,
            "-w",
            ticket_workflow_id(tid),
            "--name",
            "change_status",
            "--input",
            '{"status": "CLOSED"}',
        ]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr  # the server takes any signal
        agent = await make_user(runtime, Role.SUPPORT_AGENT)
        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
        got = await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)
        assert got.json()["status"] == "IN_PROGRESS"


def _signed(key: bytes, workflow_id: str, args: list[Any], issued_ms: int) -> dict[str, Any]:
    claims = command_auth.claims_of(workflow_id, "change_status", args, issued_ms)
    payload = {"v": 1, "iat": issued_ms, "mac": command_auth.mac(key, claims)}
    header = command_auth.header(key, workflow_id, "change_status", args)
    header.data = json.dumps(payload).encode()
    return {command_auth.HEADER: header}


def test_the_mac_binds_the_body_the_workflow_and_the_time() -> None:
    key = b"k" * 32
    admin = uuid.uuid4()
    body = [_forged_status(admin)]
    now = int(time.time() * 1000)
    headers = _signed(key, "ticket-1", body, now)
    assert command_auth.verify(key, headers, "ticket-1", "change_status", body, now) is None
    # A captured header re-used with another body, on another ticket, or as another command.
    other = [body[0].model_copy(update={"status": "CLOSED"})]
    assert command_auth.verify(key, headers, "ticket-1", "change_status", other, now) == "bad_mac"
    assert command_auth.verify(key, headers, "ticket-2", "change_status", body, now) == "bad_mac"
    assert command_auth.verify(key, headers, "ticket-1", "edit", body, now) == "bad_mac"
    # Stale (older than the window) or from the future (beyond the skew).
    late = now + (command_auth.MAX_AGE_SECONDS + 1) * 1000
    assert command_auth.verify(key, headers, "ticket-1", "change_status", body, late) == "stale"
    early = now - (command_auth.MAX_SKEW_SECONDS + 1) * 1000
    assert command_auth.verify(key, headers, "ticket-1", "change_status", body, early) == "future"
    assert command_auth.verify(key, {}, "ticket-1", "change_status", body, now) == "unsigned"
