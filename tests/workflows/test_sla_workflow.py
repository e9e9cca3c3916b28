"""SLA clocks inside TicketWorkflow on the real Temporal dev server with time skipping, at the
durations a help desk configures (a 4 h first response, a resolution in days, auto-close after
days): each test fast-forwards the ticket's workflow (`SlaClock.advance`) instead of sleeping.
A breach fires once and on time, a pause extends the deadline, a worker restart mid-clock
still fires exactly once, a priority change recomputes, closing cancels later levels,
auto-close, manual escalation, and continue-as-new keeps every clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from helpdesk.rules.sla import SlaState, clock_views
from helpdesk.rules.sla_policy import SlaClockKind
from helpdesk.runtime import Runtime
from helpdesk.temporal import ESCALATED
from models.audit import AuditLog
from models.enums import Role
from models.ticket import NotificationLog, TicketHistory
from tests.support.factories import make_user
from tests.support.sla import ON_TIME, SlaClock, eventually, history, row, set_targets
from tests.support.tickets import create_ticket, set_status, ticket_api
from workflows.ticket import TicketWorkflow

pytestmark = pytest.mark.temporal

FR, RES = SlaClockKind.FIRST_RESPONSE, SlaClockKind.RESOLUTION
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


async def _breaches_of(runtime: Runtime, ticket_id: str, clock: str) -> list[TicketHistory]:
    return [
        h for h in await history(runtime, ticket_id, "sla.breached") if h.changes["clock"] == clock
    ]


async def live_sla(sla_clock: SlaClock, ticket_id: str) -> SlaState:
    state = await sla_clock.handle(ticket_id).query(TicketWorkflow.state)
    assert state.sla is not None
    return state.sla


def at_of(entry: TicketHistory, key: str) -> datetime:
    return datetime.fromisoformat(str(entry.changes[key]))


async def test_breach_fires_once_on_time_and_escalates(runtime, sla_clock):
    await set_targets(
        runtime,
        "HIGH",
        4 * HOUR,
        DAY,
        rules=[
            ("first_response", 50, 1, ["notify_assignee"]),
            ("first_response", 100, 2, ["escalate", "notify_managers"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    manager = await make_user(runtime, Role.MANAGER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
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
        assert abs((fresh.first_response_due_at - created).total_seconds() - 4 * 3600) < 1

        assert await sla_clock.advance(tid, 2 * HOUR + MINUTE)  # the 50% level
        assert await history(runtime, tid, "sla.breached") == []
        assert await sla_clock.advance(tid, 2 * HOUR)  # past the 4 h target
        breaches = await eventually(lambda: history(runtime, tid, "sla.breached"))
        await eventually(lambda: history(runtime, tid, "escalated"))
        assert await sla_clock.advance(tid, HOUR)  # time for a duplicate, if there were one
        breaches = await history(runtime, tid, "sla.breached")
        assert len(breaches) == 1
        breach = breaches[0]
        assert breach.changes["clock"] == "first_response"
        assert 0 <= breach.changes["lateness_seconds"] <= ON_TIME
        assert (breach.at - at_of(breach, "due_at")).total_seconds() <= ON_TIME
        assert abs((at_of(breach, "due_at") - created).total_seconds() - 4 * 3600) < 1
        thresholds = await history(runtime, tid, "sla.threshold")
        assert sorted(h.changes["threshold_percent"] for h in thresholds) == [50, 100]
        halfway = next(h for h in thresholds if h.changes["threshold_percent"] == 50)
        assert 0 <= (halfway.at - created).total_seconds() - 2 * 3600 <= ON_TIME

        t = await row(runtime, tid)
        assert t.escalated and t.escalation_level == 2 and t.escalated_at is not None
        # The rule names nobody: the escalation went to the (only) active manager.
        assert t.escalated_to == manager.id
        escalated = (await history(runtime, tid, "escalated"))[0]
        assert escalated.changes["escalated_to"] == str(manager.id)
        assert t.sla_breached_at is not None
        described = await sla_clock.handle(tid).describe()
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

        now = await sla_clock.now(tid)
        views = {v.clock: v for v in clock_views(await live_sla(sla_clock, tid), now)}
        assert views[FR].breached and views[FR].remaining_seconds < 0
        assert not views[RES].breached and views[RES].remaining_seconds > 0


async def test_waiting_on_the_requester_extends_the_deadline(runtime, sla_clock):
    await set_targets(runtime, "MEDIUM", 8 * HOUR, 2 * DAY, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="MEDIUM"))["id"]
        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
        assert (await set_status(http, agent, tid, "RESOLVED")).status_code == 200
        paused = await eventually(lambda: history(runtime, tid, "sla.paused"))
        assert {h.changes["clock"] for h in paused} == {"first_response", "resolution"}
        assert (await row(runtime, tid)).resolution_due_at is None
        s = await live_sla(sla_clock, tid)
        assert s.clocks[RES].phase == "paused"
        # The requester takes three days to answer: longer than the resolution target.
        assert await sla_clock.advance(tid, 3 * DAY)
        assert await _breaches_of(runtime, tid, "resolution") == []
        assert (await set_status(http, requester, tid, "OPEN")).status_code == 200
        resumed = await eventually(lambda: _resumed(runtime, tid, "resolution"))
        pause = next(h for h in paused if h.changes["clock"] == "resolution")
        waited = (resumed.at - pause.at).total_seconds()
        assert waited >= 3 * 86400
        s = await live_sla(sla_clock, tid)
        elapsed_before_pause = s.clocks[RES].elapsed_seconds
        t = await row(runtime, tid)
        assert t.resolution_due_at is not None
        # The deadline moved by exactly the time spent waiting.
        expected = resumed.at + timedelta(seconds=2 * 86400 - elapsed_before_pause)
        assert abs((t.resolution_due_at - expected).total_seconds()) < 0.05
        assert await sla_clock.advance(tid, 2 * DAY)
        breaches = await eventually(lambda: _breaches_of(runtime, tid, "resolution"))
        breach = breaches[0]
        assert abs((at_of(breach, "due_at") - t.resolution_due_at).total_seconds()) < 0.05
        assert (breach.at - t.created_at).total_seconds() >= (2 + 3) * 86400


async def _resumed(runtime: Runtime, tid: str, clock: str) -> TicketHistory | None:
    return next(
        (h for h in await history(runtime, tid, "sla.resumed") if h.changes["clock"] == clock),
        None,
    )


async def test_worker_restart_mid_clock_fires_the_breach_exactly_once(runtime, sla_clock):
    await set_targets(
        runtime,
        "CRITICAL",
        HOUR,
        4 * HOUR,
        rules=[
            ("first_response", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="CRITICAL"))["id"]
    # The worker is gone; the deadline passes while nobody runs the workflow (the server
    # skips to the deadline's timer, then waits for a worker to handle it).
    due = (await row(runtime, tid)).first_response_due_at
    assert due is not None
    skipping = asyncio.create_task(sla_clock.advance(tid, HOUR + 5 * MINUTE))
    try:
        await eventually(lambda: _now_past(sla_clock, tid, due))
        assert not skipping.done()
        assert await history(runtime, tid, "sla.breached") == []
        async with ticket_api(runtime, sla_clock.client):
            await eventually(lambda: history(runtime, tid, "escalated"))
            assert await skipping
    finally:
        skipping.cancel()
    # Restart once more: the fresh worker replays the whole history at the next timer
    # (the resolution deadline), and nothing that fired fires again.
    async with ticket_api(runtime, sla_clock.client):
        assert await sla_clock.advance(tid, 3 * HOUR)
        await eventually(lambda: _breaches_of(runtime, tid, "resolution"))
    assert len(await _breaches_of(runtime, tid, "first_response")) == 1
    assert len(await history(runtime, tid, "escalated")) == 1
    t = await row(runtime, tid)
    assert t.escalation_level == 2


async def _now_past(sla_clock: SlaClock, tid: str, instant: datetime) -> bool:
    return await sla_clock.now(tid) > instant


async def test_priority_change_recomputes_keeping_elapsed_time(runtime, sla_clock):
    await set_targets(runtime, "LOW", DAY, 5 * DAY, rules=[])
    await set_targets(runtime, "CRITICAL", HOUR, 4 * HOUR, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="LOW"))["id"]
        created = (await row(runtime, tid)).created_at
        assert await sla_clock.advance(tid, 20 * MINUTE)  # triage, twenty minutes later
        edited = await http.put(
            f"/api/v1/tickets/{tid}", json={"priority": "CRITICAL"}, headers=agent.headers
        )
        assert edited.status_code == 200, edited.text
        recomputed = await eventually(lambda: history(runtime, tid, "sla.recomputed"))
        assert recomputed[0].changes["to_priority"] == "CRITICAL"
        t = await row(runtime, tid)
        assert t.first_response_due_at is not None
        # An hour from creation, not from the change: the twenty minutes are kept.
        assert abs((t.first_response_due_at - created).total_seconds() - 3600) < 1
        assert t.due_date == t.first_response_due_at
        assert await sla_clock.advance(tid, HOUR)
        breach = (await eventually(lambda: history(runtime, tid, "sla.breached")))[0]
        assert breach.changes["clock"] == "first_response"
        assert 0 <= (breach.at - created).total_seconds() - 3600 <= ON_TIME


async def test_closing_cancels_every_later_level(runtime, sla_clock):
    await set_targets(
        runtime,
        "HIGH",
        4 * HOUR,
        DAY,
        rules=[
            ("first_response", 30, 1, ["notify_assignee"]),
            ("first_response", 100, 2, ["escalate"]),
            ("resolution", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        assert await sla_clock.advance(tid, 90 * MINUTE)  # past the 30% level (72 min)
        await eventually(lambda: history(runtime, tid, "sla.threshold"))
        for status in ("IN_PROGRESS", "RESOLVED", "CLOSED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        stopped = await eventually(lambda: history(runtime, tid, "sla.stopped"))
        assert {h.changes["clock"] for h in stopped} == {"first_response", "resolution"}
        # A closed ticket's workflow has ended: no timer is left to fire, ever (rather than
        # waiting past both targets to see nothing happen).
        result = await sla_clock.handle(tid).result()
        assert result["status"] == "CLOSED"
    assert await history(runtime, tid, "sla.breached") == []
    assert await history(runtime, tid, "escalated") == []
    assert len(await history(runtime, tid, "sla.threshold")) == 1


async def test_first_public_reply_meets_the_target_and_cancels_its_levels(runtime, sla_clock):
    if not hasattr(TicketWorkflow, "add_comment"):
        pytest.skip("TicketWorkflow has no add_comment update yet (comments area)")
    await set_targets(
        runtime,
        "HIGH",
        4 * HOUR,
        3 * DAY,
        rules=[
            ("first_response", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        created = (await row(runtime, tid)).created_at
        note = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            headers=agent.headers,
            json={"body": "Looking into it internally", "is_internal": True},
        )
        assert note.status_code in (200, 201), note.text
        assert await sla_clock.advance(tid, HOUR)  # the public reply comes an hour later
        assert await history(runtime, tid, "sla.fulfilled") == []  # internal: not a reply
        reply = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            headers=agent.headers,
            json={"body": "We are on it", "is_internal": False},
        )
        assert reply.status_code in (200, 201), reply.text
        fulfilled = await eventually(lambda: history(runtime, tid, "sla.fulfilled"))
        assert len(fulfilled) == 1
        assert fulfilled[0].changes["met"] is True
        assert (fulfilled[0].at - created).total_seconds() >= 3600
        assert await sla_clock.advance(tid, 5 * HOUR)  # well past the 4 h target
    assert await history(runtime, tid, "sla.breached") == []
    assert await history(runtime, tid, "escalated") == []


@pytest.mark.parametrize("settings", [{"sla_auto_close_minutes": 2 * 24 * 60}], indirect=True)
async def test_resolved_ticket_closes_itself_after_the_quiet_period(runtime, sla_clock):
    await set_targets(runtime, "MEDIUM", 2 * DAY, 5 * DAY, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="MEDIUM"))["id"]
        # A reopen within the two-day quiet period disarms the first auto-close.
        for status in ("IN_PROGRESS", "RESOLVED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        assert await sla_clock.advance(tid, DAY)
        assert (await set_status(http, requester, tid, "OPEN")).status_code == 200
        assert await sla_clock.advance(tid, DAY + HOUR)  # past the first quiet period
        assert (await row(runtime, tid)).status == "OPEN"
        for status in ("IN_PROGRESS", "RESOLVED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        assert await sla_clock.advance(tid, 2 * DAY - HOUR)  # an hour before it ends
        assert (await row(runtime, tid)).status == "RESOLVED"
        # The workflow ends with the ticket closed, before this fast-forward gets through.
        assert not await sla_clock.advance(tid, 2 * HOUR)
        closed = await eventually(lambda: _status_is(runtime, tid, "CLOSED"))
        assert closed
        result = await sla_clock.handle(tid).result()
        assert result["status"] == "CLOSED"
    changes = [h.changes for h in await history(runtime, tid, "status_changed")]
    assert changes[-1]["reason"] == "auto_close"


async def _status_is(runtime: Runtime, tid: str, status: str) -> bool:
    return (await row(runtime, tid)).status == status


async def test_manual_escalation_takes_the_same_path(runtime, sla_clock):
    await set_targets(runtime, "LOW", DAY, 5 * DAY, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    senior = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, sla_clock.client) as http:
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
        described = await sla_clock.handle(tid).describe()
        assert described.typed_search_attributes.get(ESCALATED) is True


async def _has_both(
    fetch: Callable[[], Awaitable[set[uuid.UUID]]], a: uuid.UUID, b: uuid.UUID
) -> bool:
    return {a, b} <= await fetch()


@pytest.mark.parametrize("settings", [{"ticket_continue_as_new_after_events": 30}], indirect=True)
async def test_continue_as_new_keeps_every_clock(runtime, sla_clock):
    await set_targets(
        runtime,
        "HIGH",
        4 * HOUR,
        8 * HOUR,
        rules=[
            ("resolution", 100, 2, ["escalate"]),
        ],
    )
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        handle = sla_clock.handle(tid)
        first_run = (await handle.describe()).run_id
        # Three rounds: half an hour of work, resolved, two hours until the requester reopens.
        for status in ["IN_PROGRESS", "RESOLVED", "OPEN"] * 3:
            actor = requester if status == "OPEN" else agent
            assert (await set_status(http, actor, tid, status)).status_code == 200
            if status != "OPEN":
                assert await sla_clock.advance(
                    tid, 30 * MINUTE if status == "IN_PROGRESS" else 2 * HOUR
                )
        await eventually(lambda: _new_run(handle, first_run))
        s = await live_sla(sla_clock, tid)
        for action in ("sla.paused", "sla.resumed"):  # both clocks, three times each
            entries = await history(runtime, tid, action)
            assert sorted(h.changes["clock"] for h in entries) == (
                ["first_response"] * 3 + ["resolution"] * 3
            )
        # The three half hours of work are banked across the pauses (and the new run).
        assert 3 * 30 * 60 <= s.clocks[RES].elapsed_seconds < 3 * 30 * 60 + 60
        assert s.clocks[FR].phase == "running"
        t = await row(runtime, tid)
        assert t.resolution_due_at is not None
        assert await sla_clock.advance(tid, 7 * HOUR)  # past the 6.5 h of resolution left
        breach = (await eventually(lambda: _breaches_of(runtime, tid, "resolution")))[0]
        assert abs((at_of(breach, "due_at") - t.resolution_due_at).total_seconds()) < 0.05
        assert breach.changes["lateness_seconds"] <= ON_TIME
        await eventually(lambda: history(runtime, tid, "escalated"))
        assert len(await _breaches_of(runtime, tid, "resolution")) == 1


async def _new_run(handle, first_run: str) -> bool:
    """A new run that has started (its first workflow task ran: it answers queries)."""
    if (await handle.describe()).run_id == first_run:
        return False
    try:
        await handle.query(TicketWorkflow.state)
    except RPCError as err:
        if err.status is not RPCStatusCode.FAILED_PRECONDITION:  # "not scheduled yet"
            raise
        return False
    return True
