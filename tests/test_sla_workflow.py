"""SLA clocks inside TicketWorkflow on the real Temporal dev server, with policy minutes
shrunk to seconds (`sla_seconds_per_minute=1`): a breach fires once and on time, a pause
extends the deadline, a worker restart mid-clock still fires exactly once, a priority
change recomputes, closing cancels later levels, auto-close, manual escalation, and
continue-as-new keeps every clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from helpdesk.rules.sla import SlaState, clock_views
from helpdesk.rules.sla_policy import SlaClockKind
from helpdesk.runtime import Runtime
from helpdesk.temporal import ESCALATED, ticket_workflow_id
from models.audit import AuditLog
from models.base import utcnow
from models.enums import Role
from models.ticket import NotificationLog, TicketHistory
from tests.factories import make_user
from tests.sla_support import FAST, eventually, history, row, set_targets
from tests.ticket_support import create_ticket, set_status, ticket_api
from workflows.ticket import TicketWorkflow

pytestmark = pytest.mark.temporal

FR, RES = SlaClockKind.FIRST_RESPONSE, SlaClockKind.RESOLUTION


async def _breaches_of(runtime: Runtime, ticket_id: str, clock: str) -> list[TicketHistory]:
    return [
        h for h in await history(runtime, ticket_id, "sla.breached") if h.changes["clock"] == clock
    ]


async def live_sla(temporal_client, ticket_id: str) -> SlaState:
    state = await temporal_client.get_workflow_handle(ticket_workflow_id(ticket_id)).query(
        TicketWorkflow.state
    )
    assert state.sla is not None
    return state.sla


def at_of(entry: TicketHistory, key: str) -> datetime:
    return datetime.fromisoformat(str(entry.changes[key]))


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_breach_fires_once_on_time_and_escalates(runtime, temporal_client):
    await set_targets(
        runtime,
        "HIGH",
        3,
        60,
        rules=[
            ("first_response", 50, 1, ["notify_assignee"]),
            ("first_response", 100, 2, ["escalate", "notify_managers"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    manager = await make_user(runtime, Role.MANAGER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        ticket = await create_ticket(http, requester, priority="HIGH")
        tid = ticket["id"]
        await http.post(
            f"/api/v1/tickets/{tid}/assign",
            json={"agent_id": str(agent.id)},
            headers=manager.headers,
        )
        created = (await row(runtime, tid)).created_at
        fresh = await row(runtime, tid)
        assert fresh.first_response_due_at is not None
        assert abs((fresh.first_response_due_at - created).total_seconds() - 3) < 1

        breaches = await eventually(lambda: history(runtime, tid, "sla.breached"))
        await eventually(lambda: history(runtime, tid, "escalated"))
        await asyncio.sleep(1.5)  # time for a duplicate to show up, if there were one
        breaches = await history(runtime, tid, "sla.breached")
        assert len(breaches) == 1
        breach = breaches[0]
        assert breach.changes["clock"] == "first_response"
        assert 0 <= breach.changes["lateness_seconds"] <= 1.0
        assert (breach.at - at_of(breach, "due_at")).total_seconds() <= 1.0
        thresholds = await history(runtime, tid, "sla.threshold")
        assert sorted(h.changes["threshold_percent"] for h in thresholds) == [50, 100]

        t = await row(runtime, tid)
        assert t.escalated and t.escalation_level == 2 and t.escalated_at is not None
        # The rule names nobody: the escalation went to the (only) active manager.
        assert t.escalated_to == manager.id
        escalated = (await history(runtime, tid, "escalated"))[0]
        assert escalated.changes["escalated_to"] == str(manager.id)
        assert t.sla_breached_at is not None
        described = await temporal_client.get_workflow_handle(ticket_workflow_id(tid)).describe()
        assert described.typed_search_attributes.get(ESCALATED) is True
        async with runtime.database.transaction() as session:
            audits = list(
                await session.scalars(select(AuditLog.action).where(AuditLog.record_id == tid))
            )
            sent = list(
                await session.scalars(
                    select(NotificationLog.recipient_id).where(
                        NotificationLog.ticket_id == uuid.UUID(tid)
                    )
                )
            )
        assert "ticket.sla.breached" in audits
        assert manager.id in sent  # notify_managers at 100%
        assert agent.id in sent  # notify_assignee at 50%

        views = {v.clock: v for v in clock_views(await live_sla(temporal_client, tid), utcnow())}
        assert views[FR].breached and views[FR].remaining_seconds < 0
        assert not views[RES].breached and views[RES].remaining_seconds > 0


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_waiting_on_the_requester_extends_the_deadline(runtime, temporal_client):
    await set_targets(runtime, "MEDIUM", 4, 4, rules=[])  # both clocks pause alike
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="MEDIUM"))["id"]
        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
        assert (await set_status(http, agent, tid, "RESOLVED")).status_code == 200
        paused = await eventually(lambda: history(runtime, tid, "sla.paused"))
        assert (await row(runtime, tid)).resolution_due_at is None
        s = await live_sla(temporal_client, tid)
        assert s.clocks[RES].phase == "paused"
        await asyncio.sleep(3)  # the requester takes 3 s to answer
        assert (await set_status(http, requester, tid, "OPEN")).status_code == 200
        resumed = await eventually(lambda: history(runtime, tid, "sla.resumed"))
        waited = (resumed[0].at - paused[0].at).total_seconds()
        assert waited >= 3
        s = await live_sla(temporal_client, tid)
        elapsed_before_pause = s.clocks[RES].elapsed_seconds
        t = await row(runtime, tid)
        assert t.resolution_due_at is not None
        # The deadline moved by exactly the time spent waiting.
        expected = resumed[0].at + timedelta(seconds=4 - elapsed_before_pause)
        assert abs((t.resolution_due_at - expected).total_seconds()) < 0.05
        breaches = await eventually(lambda: _breaches_of(runtime, tid, "resolution"))
        breach = breaches[0]
        assert abs((at_of(breach, "due_at") - t.resolution_due_at).total_seconds()) < 0.05
        assert (breach.at - t.created_at).total_seconds() >= 4 + 3


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_worker_restart_mid_clock_fires_the_breach_exactly_once(runtime, temporal_client):
    await set_targets(
        runtime,
        "CRITICAL",
        3,
        100,
        rules=[
            ("first_response", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="CRITICAL"))["id"]
    # The worker is gone; the deadline passes while nobody runs the workflow.
    await asyncio.sleep(4)
    assert await history(runtime, tid, "sla.breached") == []
    async with ticket_api(runtime, temporal_client):
        await eventually(lambda: history(runtime, tid, "escalated"))
        # Restart once more right after the breach: nothing fires again.
    async with ticket_api(runtime, temporal_client):
        await asyncio.sleep(2)
    assert len(await history(runtime, tid, "sla.breached")) == 1
    assert len(await history(runtime, tid, "escalated")) == 1
    t = await row(runtime, tid)
    assert t.escalation_level == 2


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_priority_change_recomputes_keeping_elapsed_time(runtime, temporal_client):
    await set_targets(runtime, "LOW", 100, 400, rules=[])
    await set_targets(runtime, "CRITICAL", 5, 20, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="LOW"))["id"]
        created = (await row(runtime, tid)).created_at
        await asyncio.sleep(1)
        edited = await http.put(
            f"/api/v1/tickets/{tid}", json={"priority": "CRITICAL"}, headers=agent.headers
        )
        assert edited.status_code == 200, edited.text
        recomputed = await eventually(lambda: history(runtime, tid, "sla.recomputed"))
        assert recomputed[0].changes["to_priority"] == "CRITICAL"
        t = await row(runtime, tid)
        assert t.first_response_due_at is not None
        # Five seconds from creation, not from the change: the elapsed second is kept.
        assert abs((t.first_response_due_at - created).total_seconds() - 5) < 1
        assert t.due_date == t.first_response_due_at
        breach = (await eventually(lambda: history(runtime, tid, "sla.breached")))[0]
        assert (breach.at - created).total_seconds() < 6.5


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_closing_cancels_every_later_level(runtime, temporal_client):
    await set_targets(
        runtime,
        "HIGH",
        3,
        6,
        rules=[
            ("first_response", 30, 1, ["notify_assignee"]),
            ("first_response", 100, 2, ["escalate"]),
            ("resolution", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        await eventually(lambda: history(runtime, tid, "sla.threshold"))  # the 30% level
        for status in ("IN_PROGRESS", "RESOLVED", "CLOSED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        stopped = await eventually(lambda: history(runtime, tid, "sla.stopped"))
        assert {h.changes["clock"] for h in stopped} == {"first_response", "resolution"}
        await asyncio.sleep(7)  # past both targets
    assert await history(runtime, tid, "sla.breached") == []
    assert await history(runtime, tid, "escalated") == []
    assert len(await history(runtime, tid, "sla.threshold")) == 1


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_first_public_reply_meets_the_target_and_cancels_its_levels(runtime, temporal_client):
    if not hasattr(TicketWorkflow, "add_comment"):
        pytest.skip("TicketWorkflow has no add_comment update yet (comments area)")
    await set_targets(
        runtime,
        "HIGH",
        4,
        100,
        rules=[
            ("first_response", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        note = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            headers=agent.headers,
            json={"body": "Looking into it internally", "is_internal": True},
        )
        assert note.status_code in (200, 201), note.text
        await asyncio.sleep(0.5)
        assert await history(runtime, tid, "sla.fulfilled") == []  # internal: not a reply
        reply = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            headers=agent.headers,
            json={"body": "We are on it", "is_internal": False},
        )
        assert reply.status_code in (200, 201), reply.text
        fulfilled = await eventually(lambda: history(runtime, tid, "sla.fulfilled"))
        assert fulfilled[0].changes["met"] is True
        await asyncio.sleep(5)
    assert await history(runtime, tid, "sla.breached") == []
    assert await history(runtime, tid, "escalated") == []


@pytest.mark.parametrize("settings", [{**FAST, "sla_auto_close_minutes": 2}], indirect=True)
async def test_resolved_ticket_closes_itself_after_the_quiet_period(runtime, temporal_client):
    await set_targets(runtime, "MEDIUM", 100, 200, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="MEDIUM"))["id"]
        # A reopen within the quiet period disarms the first auto-close.
        for status in ("IN_PROGRESS", "RESOLVED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        await asyncio.sleep(1)
        assert (await set_status(http, requester, tid, "OPEN")).status_code == 200
        await asyncio.sleep(1.5)
        assert (await row(runtime, tid)).status == "OPEN"
        for status in ("IN_PROGRESS", "RESOLVED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        resolved_at = time.monotonic()
        closed = await eventually(lambda: _status_is(runtime, tid, "CLOSED"), timeout=15)
        assert closed
        assert time.monotonic() - resolved_at >= 1.9
        result = await temporal_client.get_workflow_handle(ticket_workflow_id(tid)).result()
        assert result["status"] == "CLOSED"
    changes = [h.changes for h in await history(runtime, tid, "status_changed")]
    assert changes[-1]["reason"] == "auto_close"


async def _status_is(runtime: Runtime, tid: str, status: str) -> bool:
    return (await row(runtime, tid)).status == status


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_manual_escalation_takes_the_same_path(runtime, temporal_client):
    await set_targets(runtime, "LOW", 100, 200, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    senior = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="LOW"))["id"]
        response = await http.post(
            f"/api/v1/tickets/{tid}/escalate",
            headers=agent.headers,
            json={"reason": "needs_expertise", "escalated_to": str(senior.id)},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["escalated"] is True and body["escalation_level"] == 1
        assert body["escalated_to"] == str(senior.id)
        bad = await http.post(
            f"/api/v1/tickets/{tid}/escalate",
            headers=agent.headers,
            json={"reason": "other", "escalated_to": str(requester.id)},
        )
        assert bad.status_code == 422
        missing = await http.post(
            f"/api/v1/tickets/{uuid.uuid4()}/escalate",
            headers=agent.headers,
            json={"reason": "other"},
        )
        assert missing.status_code == 404

        async def notified() -> set[uuid.UUID]:
            async with runtime.database.transaction() as session:
                return set(
                    await session.scalars(
                        select(NotificationLog.recipient_id).where(
                            NotificationLog.ticket_id == uuid.UUID(tid),
                            NotificationLog.kind == "escalated",
                        )
                    )
                )

        recipients = await eventually(notified)
        await eventually(lambda: _has_both(notified, senior.id, manager.id))
        recipients = await notified()
        assert {senior.id, manager.id} <= recipients
        entry = (await history(runtime, tid, "escalated"))[0]
        assert entry.changes["reason"] == "needs_expertise"
        described = await temporal_client.get_workflow_handle(ticket_workflow_id(tid)).describe()
        assert described.typed_search_attributes.get(ESCALATED) is True


async def _has_both(
    fetch: Callable[[], Awaitable[set[uuid.UUID]]], a: uuid.UUID, b: uuid.UUID
) -> bool:
    return {a, b} <= await fetch()


@pytest.mark.parametrize(
    "settings", [{**FAST, "ticket_continue_as_new_after_events": 30}], indirect=True
)
async def test_continue_as_new_keeps_every_clock(runtime, temporal_client):
    await set_targets(
        runtime,
        "HIGH",
        12,
        12,
        rules=[
            ("resolution", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(tid))
        first_run = (await handle.describe()).run_id
        for status in ["IN_PROGRESS", "RESOLVED", "OPEN"] * 3:
            actor = requester if status == "OPEN" else agent
            assert (await set_status(http, actor, tid, status)).status_code == 200
        await eventually(lambda: _new_run(handle, first_run))
        s = await live_sla(temporal_client, tid)
        for action in ("sla.paused", "sla.resumed"):  # both clocks, three times each
            entries = await history(runtime, tid, action)
            assert sorted(h.changes["clock"] for h in entries) == (
                ["first_response"] * 3 + ["resolution"] * 3
            )
        assert s.clocks[RES].elapsed_seconds > 0  # banked across three pauses
        assert s.clocks[FR].phase == "running"
        t = await row(runtime, tid)
        assert t.resolution_due_at is not None
        breach = (await eventually(lambda: _breaches_of(runtime, tid, "resolution"), timeout=30))[0]
        assert abs((at_of(breach, "due_at") - t.resolution_due_at).total_seconds()) < 0.05
        assert breach.changes["lateness_seconds"] <= 1.0
        await eventually(lambda: history(runtime, tid, "escalated"))
        assert len(await _breaches_of(runtime, tid, "resolution")) == 1


async def _new_run(handle, first_run: str) -> bool:
    return (await handle.describe()).run_id != first_run
