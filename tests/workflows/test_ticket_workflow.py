"""TicketWorkflow on the real dev server: deduplication, continue-as-new carrying state,
search attributes and summaries, workload balancing under concurrent creations,
re-assignment on deactivation, reconciliation of rows without a workflow, and the PHI
canary (absent from raw Temporal history and from the SQLite file and WAL)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from google.protobuf.message import Message
from sqlalchemy import func, select, update
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client

from helpdesk.rules.contracts import Actor, StatusChange
from helpdesk.rules.transitions import Status
from helpdesk.services import assignment, reassignment, ticket_reconcile, tickets
from helpdesk.temporal import (
    ASSIGNED_AGENT,
    ENCODING,
    ESCALATED,
    TICKET_PRIORITY,
    TICKET_STATUS,
    UI_TEXT,
    codec,
    ticket_workflow_id,
)
from models.enums import Role
from models.ticket import TicketHistory
from models.user import User
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api
from workflows.ticket import TicketWorkflow

# What the SDK core writes, in plaintext, into a local activity's marker (no input, no PHI).
LOCAL_ACTIVITY_MARKER_KEYS = {
    "activation_index",
    "activity_id",
    "activity_type",
    "attempt",
    "backoff",
    "complete_time",
    "original_schedule_time",
    "seq",
}

pytestmark = pytest.mark.temporal


async def _history_count(runtime, ticket_id: str, action: str) -> int:
    async with runtime.database.transaction() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(TicketHistory)
                .where(
                    TicketHistory.ticket_id == uuid.UUID(ticket_id), TicketHistory.action == action
                )
            )
        )


@pytest.mark.parametrize("settings", [{"ticket_continue_as_new_after_events": 25}], indirect=True)
async def test_continue_as_new_keeps_state_and_deduplication(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        ticket = await create_ticket(http, requester, priority="HIGH")
        tid = ticket["id"]
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(tid))
        first_run = (await handle.describe()).run_id
        cycle = ["IN_PROGRESS", "RESOLVED", "OPEN"] * 3
        for target in cycle:
            response = await set_status(http, manager, tid, target)
            assert response.status_code == 200, response.text
        # A request id applied before the continue-as-new is still recognised after it.
        replay = StatusChange(
            request_id="dup-1",
            actor=Actor(id=manager.id, role="MANAGER"),
            status=Status.IN_PROGRESS,
        )
        state = await handle.execute_update(TicketWorkflow.change_status, replay)
        for target in (Status.RESOLVED, Status.OPEN, Status.IN_PROGRESS, Status.RESOLVED):
            state = await handle.execute_update(  # push past the threshold again
                TicketWorkflow.change_status,
                StatusChange(
                    request_id=f"more-{uuid.uuid4()}",
                    actor=Actor(id=manager.id, role="MANAGER"),
                    status=target,
                ),
            )
        # IN_PROGRESS from RESOLVED would be refused: the duplicate is answered, not judged.
        again = await handle.execute_update(TicketWorkflow.change_status, replay)
        assert again.version == state.version
        assert "dup-1" in (await handle.query(TicketWorkflow.state)).seen_request_ids
        assert again.seen_request_ids == []  # answers leave them out (history size)

        # It continued as new (at least once): the main loop does so in the workflow task
        # after the update that crossed the threshold, so give it a moment under load.
        for _ in range(50):
            if (await handle.describe()).run_id != first_run:
                break
            await asyncio.sleep(0.1)
        assert (await handle.describe()).run_id != first_run
        live = await handle.query(TicketWorkflow.state)
        assert live.status is Status.RESOLVED
        assert live.priority == "HIGH"
        assert live.version == len(cycle) + 1 + 4
        row = (await http.get(f"/api/v1/tickets/{tid}", headers=manager.headers)).json()
        assert row["version"] == live.version
        assert row["workflow"]["version"] == live.version
    assert await _history_count(runtime, tid, "status_changed") == len(cycle) + 1 + 4


async def test_search_attributes_summary_and_refusals_stay_out_of_history(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        ticket = await create_ticket(http, requester, title="Secret title", priority="CRITICAL")
        tid = ticket["id"]
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(tid))

        async def updates_in_history() -> int:
            history = await handle.fetch_history()
            return sum(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
                for e in history.events
            )

        before = await updates_in_history()
        refused = await set_status(http, agent, tid, "CLOSED")
        assert refused.status_code == 409
        assert await updates_in_history() == before  # the validator refused it: no trace
        await set_status(http, agent, tid, "IN_PROGRESS")
        assert await updates_in_history() == before + 1

        await http.post(
            f"/api/v1/tickets/{tid}/assign", json={"agent_id": str(agent.id)}, headers=agent.headers
        )
        description = await handle.describe()
        attrs = description.typed_search_attributes
        assert attrs.get(TICKET_STATUS) == "IN_PROGRESS"
        assert attrs.get(TICKET_PRIORITY) == "CRITICAL"
        assert attrs.get(ASSIGNED_AGENT) == str(agent.id)
        assert attrs.get(ESCALATED) is False
        summary = await description.static_summary()
        assert summary == f"Ticket #{ticket['number']} · CRITICAL · OPEN"
        assert "Secret" not in (summary or "")


@pytest.mark.parametrize(
    # All 40 at once: above the default in-flight cap, which would shed some with 503.
    "settings",
    [{"auto_assign_on_create": True, "ticket_create_max_in_flight": 64}],
    indirect=True,
)
async def test_concurrent_creations_spread_the_load(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    agents = [await make_user(runtime, Role.SUPPORT_AGENT) for _ in range(4)]
    priorities = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    async with ticket_api(runtime, temporal_client) as http:
        created = await asyncio.gather(
            *(create_ticket(http, requester, priority=priorities[i % 4]) for i in range(40))
        )
    assert all(t["assignee_id"] for t in created)
    assert all(t["workflow"]["assignee_id"] == t["assignee_id"] for t in created)
    async with runtime.database.transaction() as session:
        loads = await assignment.agent_loads(session)
    assert {a.agent_id for a in loads} == {a.id for a in agents}
    # 40 tickets weighing 150 across 4 agents: greedy least-load keeps them within one
    # CRITICAL ticket (8) of each other, whatever order the creations commit in.
    assert assignment.spread(loads) <= 8
    assert sum(a.weighted_load for a in loads) == 10 * (1 + 2 + 4 + 8)


async def test_deactivated_agents_tickets_are_reassigned_by_their_workflows(
    runtime, temporal_client
):
    requester = await make_user(runtime, Role.END_USER)
    leaving = await make_user(runtime, Role.SUPPORT_AGENT)
    staying = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        ids = []
        for _ in range(3):
            t = await create_ticket(http, requester)
            r = await http.post(
                f"/api/v1/tickets/{t['id']}/assign",
                json={"agent_id": str(leaving.id)},
                headers=leaving.headers,
            )
            assert r.status_code == 200
            ids.append(t["id"])
        async with runtime.database.transaction() as session:
            await session.execute(update(User).where(User.id == leaving.id).values(is_active=False))
        assert await reassignment.reassign_open_tickets_of(runtime, leaving.id) == 3
        # Repeating it is harmless: nothing of theirs is left.
        assert await reassignment.reassign_open_tickets_of(runtime, leaving.id) == 0
        for tid in ids:
            state = await temporal_client.get_workflow_handle(ticket_workflow_id(tid)).query(
                TicketWorkflow.state
            )
            assert state.assignee_id == staying.id
            got = (await http.get(f"/api/v1/tickets/{tid}", headers=staying.headers)).json()
            assert got["assignee_id"] == str(staying.id)


async def test_rows_without_a_workflow_are_reconciled(runtime, temporal_client):
    """A crash between the row's commit and the workflow's start leaves a row without a
    workflow: the reconciler (and any later command) starts it."""
    requester = await make_user(runtime, Role.END_USER)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        orphans = []
        for _ in range(2):
            async with runtime.database.transaction() as session:
                row = await tickets.insert_ticket(
                    session,
                    runtime,
                    requester_id=requester.id,
                    data=tickets.NewTicket(title="Orphan", description=None),
                    auto_assign=False,
                )
                orphans.append(str(row.id))
        # A command to a row without a workflow starts it first.
        moved = await set_status(http, manager, orphans[0], "IN_PROGRESS")
        assert moved.status_code == 200, moved.text
        assert moved.json()["workflow"]["status"] == "IN_PROGRESS"

        started = await ticket_reconcile.reconcile_workflows(runtime, grace_seconds=0)
        assert started >= 1
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(orphans[1]))
        first = await handle.describe()
        state = await handle.query(TicketWorkflow.state)
        assert state.status is Status.OPEN and state.number > 0
        await ticket_reconcile.reconcile_workflows(runtime, grace_seconds=0)
        assert (await handle.describe()).run_id == first.run_id  # not started twice
        # The first orphan kept its progress: the reconciler did not restart it.
        state0 = await temporal_client.get_workflow_handle(ticket_workflow_id(orphans[0])).query(
            TicketWorkflow.state
        )
        assert state0.status is Status.IN_PROGRESS


def _payloads(message: Message, out: list[Payload]) -> None:
    """Every Payload inside a protobuf message, recursively."""
    if isinstance(message, Payload):
        out.append(message)
        return
    for _field, value in message.ListFields():
        if isinstance(value, Message):
            _payloads(value, out)
        elif isinstance(value, str | bytes | int | float | bool):
            continue
        else:  # repeated field or map
            items = value.values() if hasattr(value, "values") else value
            for item in items:
                if isinstance(item, Message):
                    _payloads(item, out)


async def test_canary_absent_from_raw_history_and_database_files(
    runtime, temporal_client, temporal_server, settings
):
    canary_title = f"CANARY{uuid.uuid4().hex[:12]}title"
    canary_text = f"CANARY{uuid.uuid4().hex[:12]}description"
    canary_note = f"CANARY{uuid.uuid4().hex[:12]}note"
    canary_edit = f"CANARY{uuid.uuid4().hex[:12]}edit"
    canaries = [canary_title, canary_text, canary_note, canary_edit]
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        ticket = await create_ticket(http, requester, title=canary_title, description=canary_text)
        tid = ticket["id"]
        await set_status(http, agent, tid, "IN_PROGRESS")
        await set_status(http, agent, tid, "RESOLVED", note=canary_note)
        edited = await http.put(
            f"/api/v1/tickets/{tid}", json={"description": canary_edit}, headers=requester.headers
        )
        assert edited.status_code == 200
        # What a user sees: the text, decrypted.
        got = (await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)).json()
        assert got["title"] == canary_title and got["description"] == canary_edit
        notes = (await http.get(f"/api/v1/tickets/{tid}/history", headers=requester.headers)).json()
        assert [e["note"] for e in notes if e["note"]] == [canary_note]

    # Raw Temporal history through a client WITHOUT our codec.
    plain = await Client.connect(temporal_server, namespace=settings.temporal_namespace)
    history = await plain.get_workflow_handle(ticket_workflow_id(tid)).fetch_history()
    raw = History(events=history.events).SerializeToString() + history.to_json().encode()
    for canary in canaries:
        assert canary.encode() not in raw
    # Positive control: the note and the edit did travel through Temporal, encrypted.
    payloads: list[Payload] = []
    for event in history.events:
        _payloads(event, payloads)
    encrypted = [p for p in payloads if p.metadata.get("encoding") == ENCODING]
    # Everything but search attributes is encrypted; those are plaintext by design and
    # hold only status, priority, flags and an agent id.
    plaintext = [p for p in payloads if p.metadata.get("encoding") != ENCODING]
    assert encrypted
    # Local activity markers are written by the SDK core in plaintext too: they hold only
    # the activity's type, id, attempt and times (its input is not recorded, its result is
    # encrypted). No patch markers: nothing was ever released, so no `workflow.patched`.
    # UI text (summaries, PHI-free by design) and the command MACs (ids, a time and a
    # digest) are plaintext too.
    ui = [p for p in plaintext if p.metadata.get(UI_TEXT) == b"1"]
    assert ui and all(isinstance(json.loads(p.data), str) for p in ui)
    plaintext = [p for p in plaintext if p.metadata.get(UI_TEXT) != b"1"]
    macs = [p for p in plaintext if p.data.startswith(b'{"v": ')]
    assert macs and all(json.loads(p.data).keys() == {"v", "iat", "mac"} for p in macs)
    plaintext = [p for p in plaintext if not p.data.startswith(b'{"v": ')]
    markers = [p for p in plaintext if b"type" not in p.metadata]
    assert all(json.loads(p.data).keys() == LOCAL_ACTIVITY_MARKER_KEYS for p in markers), [
        sorted(json.loads(p.data)) for p in markers
    ]
    local = [json.loads(p.data) for p in markers if "activity_type" in json.loads(p.data)]
    assert {m["activity_type"] for m in local} <= {
        "create_ticket",
        "notify_change",
        "record_sla",
        "load_sla_policy",
    }
    plaintext = [p for p in plaintext if b"type" in p.metadata]
    # No TemporalChangeVersion upserts (those came with `workflow.patched`).
    assert not [p for p in plaintext if p.data.startswith(b"[")]
    assert {p.data for p in plaintext} <= {
        b'"OPEN"',
        b'"IN_PROGRESS"',
        b'"RESOLVED"',
        b'"MEDIUM"',
        b"false",
        b"",
    }
    decoded = b"".join(p.data for p in await codec(settings).decode(encrypted))
    assert canary_note.encode() in decoded and canary_edit.encode() in decoded

    # The SQLite file and its WAL.
    await runtime.database.dispose()
    db = Path(settings.database_url.split("///", 1)[1])
    files = [db, Path(f"{db}-wal")]
    blob = b"".join(f.read_bytes() for f in files if f.exists())
    assert blob
    for canary in canaries:
        assert canary.encode() not in blob


def test_the_contract_names_are_the_ones_the_workflows_register() -> None:
    """The API reaches the workflows by the names in helpdesk.rules.contracts only."""
    from temporalio.workflow import _Definition

    from helpdesk.rules.contracts import (
        ATTACHMENT_SCAN_WORKFLOW,
        TICKET_STATE_QUERY,
        TICKET_WORKFLOW,
        TicketCommand,
    )
    from workflows.attachment_scan import AttachmentScanWorkflow
    from workflows.ticket import TicketWorkflow

    ticket = _Definition.must_from_class(TicketWorkflow)
    assert ticket.name == TICKET_WORKFLOW
    assert set(ticket.updates) == {command.value for command in TicketCommand}
    assert TICKET_STATE_QUERY in ticket.queries
    assert _Definition.must_from_class(AttachmentScanWorkflow).name == ATTACHMENT_SCAN_WORKFLOW


def test_the_activity_names_are_what_the_worker_registers(settings) -> None:
    """Workflows reach activities by `ActivityName` only: every name is registered by the
    worker under that name, and the worker registers nothing the names do not list."""
    from temporalio.activity import _Definition as _ActivityDefinition

    from activities.registry import build_activities
    from helpdesk.rules.activity_contracts import ActivityName
    from helpdesk.runtime import build_runtime

    runtime = build_runtime(settings)
    registered = {_ActivityDefinition.must_from_callable(a).name for a in build_activities(runtime)}
    assert registered == {name.value for name in ActivityName}
