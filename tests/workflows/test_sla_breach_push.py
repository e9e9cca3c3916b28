"""A breach is recorded and pushed by ONE activity (`record_sla_then_push`): the history
entry, the audit row and the ticket's breach column commit first, then `sla.breach` goes to the
staff rooms. A push that fails there never fails the record: the workflow sends it with its
own push activity.

On the time-skipping dev server at a real target (a CRITICAL ticket's first response within
the hour): each test fast-forwards the ticket's workflow past it instead of sleeping.

`tests/replay/histories/ticket_sla_breach.json` is recorded by `test_a_fresh_breach_history_replays`
(with HELPDESK_RECORD_HISTORIES=1) under the fixed codec key of tests/replay/test_replay.py, which
replays every stored history against today's workflow.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from helpdesk import push
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from helpdesk.temporal import ticket_workflow_id
from models.audit import AuditLog
from models.enums import Role
from tests.support.factories import make_user
from tests.support.replay import FIXED, HISTORIES, replayer
from tests.support.sla import SlaClock, eventually, history, row, set_targets
from tests.support.tickets import create_ticket, set_status, ticket_api

pytestmark = pytest.mark.temporal

TARGET = timedelta(hours=1)  # a CRITICAL ticket's first response


class _Recording:
    """A publisher that keeps what it was asked to send; it refuses the first `refuse`
    pushes of `sla.breach` (a Redis outage, say)."""

    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[tuple[str, dict[str, Any], list[str]]] = []
        self.refuse = refuse

    async def publish(self, event: str, payload: dict[str, Any], rooms: list[str]) -> None:
        if event == push.PushEvent.SLA_BREACH.value and self.refuse:
            self.refuse -= 1
            raise ConnectionError("fan-out unavailable")
        self.sent.append((event, payload, rooms))

    async def disconnect_session(self, session_id: uuid.UUID) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def breaches(self) -> list[tuple[dict[str, Any], list[str]]]:
        return [(p, r) for e, p, r in self.sent if e == push.PushEvent.SLA_BREACH.value]


async def _activities(client: Client, ticket_id: str) -> list[str]:
    history = await client.get_workflow_handle(ticket_workflow_id(ticket_id)).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def _breach(runtime: Runtime, sla_clock: SlaClock, publisher: _Recording) -> str:
    """A CRITICAL ticket whose first response breaches an hour after creation; its id."""
    await set_targets(runtime, "CRITICAL", TARGET, 4 * TARGET, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    runtime.push = publisher
    async with ticket_api(runtime, sla_clock.client) as http:
        tid: str = (await create_ticket(http, requester, priority="CRITICAL"))["id"]
        assert await sla_clock.advance(tid, TARGET + timedelta(minutes=1))
        await eventually(lambda: history(runtime, tid, "sla.breached"))
        await eventually(lambda: asyncio.sleep(0, publisher.breaches()))
        # Time for a duplicate to show up, if there were one (retries included).
        assert await sla_clock.advance(tid, TARGET)
    return tid


async def test_a_breach_is_recorded_then_pushed_by_one_activity(
    runtime: Runtime, sla_clock: SlaClock
) -> None:
    publisher = _Recording()
    tid = await _breach(runtime, sla_clock, publisher)

    (breach,) = await history(runtime, tid, "sla.breached")
    assert breach.changes["clock"] == "first_response"
    t = await row(runtime, tid)
    assert t.sla_breached_at is not None
    async with runtime.database.transaction() as session:
        audits = list(
            await session.scalars(select(AuditLog.action).where(AuditLog.record_id == tid))
        )
    assert audits.count("ticket.sla.breached") == 1

    ((payload, rooms),) = publisher.breaches()
    assert payload["ticket_id"] == tid and payload["number"] == t.number
    assert payload["sla_clock"] == "first_response"
    assert payload["event_id"] == f"{tid}:{breach.event_key}"
    assert push.MANAGERS in rooms and push.ticket_staff_room(tid) in rooms
    assert push.user_room(t.requester_id) not in rooms  # an SLA breach is staff business

    scheduled = await _activities(sla_clock.client, tid)
    assert scheduled.count("record_sla_then_push") == 1
    assert "publish_event" not in scheduled  # no separate push activity for the breach


async def test_a_failed_push_keeps_the_record_and_the_workflow_sends_it(
    runtime: Runtime, sla_clock: SlaClock
) -> None:
    publisher = _Recording(refuse=1)
    tid = await _breach(runtime, sla_clock, publisher)

    assert len(await history(runtime, tid, "sla.breached")) == 1
    assert (await row(runtime, tid)).sla_breached_at is not None
    assert publisher.refuse == 0  # the activity's push was refused...
    assert len(publisher.breaches()) == 1  # ...and the workflow's push activity sent it
    scheduled = await _activities(sla_clock.client, tid)
    assert scheduled.count("record_sla_then_push") == 1  # not retried for the push
    assert scheduled.count("publish_event") == 1


async def record_breach(runtime: Runtime, sla_clock: SlaClock) -> WorkflowHistory:
    """A ticket whose first response breaches, then resolved and closed: its history."""
    await set_targets(runtime, "CRITICAL", TARGET, 4 * TARGET, rules=[])
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, sla_clock.client) as http:
        tid = (await create_ticket(http, requester, priority="CRITICAL"))["id"]
        assert await sla_clock.advance(tid, TARGET + timedelta(minutes=1))
        await eventually(lambda: history(runtime, tid, "sla.breached"))
        for actor, status in ((agent, "IN_PROGRESS"), (agent, "RESOLVED"), (requester, "CLOSED")):
            assert (await set_status(http, actor, tid, status)).status_code == 200
        handle = sla_clock.handle(tid)
        async with asyncio.timeout(60):
            await handle.result()
    return await handle.fetch_history()


@pytest.mark.parametrize("settings", [FIXED], indirect=True)
async def test_a_fresh_breach_history_replays(
    runtime: Runtime, sla_clock: SlaClock, settings: Settings
) -> None:
    history_now = await record_breach(runtime, sla_clock)
    names = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history_now.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert "record_sla_then_push" in names
    result = await replayer(settings).replay_workflow(history_now)
    assert result.replay_failure is None
    if os.environ.get("HELPDESK_RECORD_HISTORIES") == "1":
        target = HISTORIES / "ticket_sla_breach.json"
        target.write_text(json.dumps(history_now.to_json_dict(), indent=1))
