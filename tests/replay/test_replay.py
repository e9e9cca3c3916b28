"""Determinism: every recorded history replays against today's workflows (CI runs this).

`tests/replay/histories/ticket_lifecycle.json` was recorded from a real run (create, assign,
status changes with a note, edit, escalation, close) with the fixed codec key below, so the
encrypted payloads in it decode here; `ticket_sla_breach.json`
(tests/workflows/test_sla_breach_push.py) and `ticket_ordinary_life.json`
(tests/replay/test_history_size.py: comments, escalation, reassignment) likewise. All were
recorded afresh when the pre-release `workflow.patched` branches were removed (issue 12:
nothing had been released, so no history needed them).

From the first release on, the policy in README "Changing a workflow" holds: a change that
alters the commands a workflow issues is guarded with `workflow.patched(id)`, recorded as a
new fixture, then deprecated (`workflow.deprecate_patch(id)`) once no running workflow
predates it, then removed with its fixture once no history holds the deprecation. Record
with `HELPDESK_RECORD_HISTORIES=1 pytest tests/replay/test_replay.py
tests/workflows/test_sla_breach_push.py tests/replay/test_history_size.py -k "fresh or
ordinary"` (`1` replaces the fixtures; any other value `<name>` adds histories/<name>.json
beside them).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from helpdesk.rules.contracts import ChangeEvent, TicketInput, TicketState
from helpdesk.temporal import data_converter, ticket_workflow_id
from models.enums import Role
from tests.support.factories import make_user
from tests.support.replay import FIXED, HISTORIES, replayer
from tests.support.tickets import create_ticket, set_status, ticket_api
from workflows.registry import WORKFLOWS
from workflows.ticket import TicketWorkflow

pytestmark = pytest.mark.temporal

LIFECYCLE = HISTORIES / "ticket_lifecycle.json"
# A test-only key: the recorded payloads are encrypted under it. Never used elsewhere.


async def record_lifecycle(runtime, temporal_client) -> WorkflowHistory:
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH", tags=["vpn"]))["id"]
        steps = [
            await http.post(
                f"/api/v1/tickets/{tid}/assign",
                json={"agent_id": str(agent.id)},
                headers=agent.headers,
            ),
            await set_status(http, agent, tid, "CLOSED"),  # refused: leaves no trace
            await set_status(http, agent, tid, "IN_PROGRESS"),
            await http.put(
                f"/api/v1/tickets/{tid}",
                json={"description": "more detail", "tags": ["vpn", "laptop"]},
                headers=requester.headers,
            ),
            await http.put(
                f"/api/v1/tickets/{tid}", json={"priority": "CRITICAL"}, headers=manager.headers
            ),
            await set_status(http, agent, tid, "RESOLVED", note="Reinstalled the client"),
            await set_status(http, requester, tid, "OPEN"),
            await http.post(
                f"/api/v1/tickets/{tid}/assign", json={"auto": True}, headers=manager.headers
            ),
            await set_status(http, agent, tid, "IN_PROGRESS"),
            await set_status(http, agent, tid, "RESOLVED"),
            await set_status(http, requester, tid, "CLOSED"),
        ]
        assert [r.status_code for r in steps] == [200, 409, *([200] * 9)]
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(tid))
        # Closed: the workflow completes once its worker has recorded the stopped SLA
        # clocks, so wait while the worker still runs.
        async with asyncio.timeout(60):
            await handle.result()
    return await handle.fetch_history()


@pytest.mark.parametrize("settings", [FIXED], indirect=True)
async def test_a_fresh_history_replays(runtime, temporal_client, settings):
    """Record now and replay at once (the workflow is deterministic today); with
    HELPDESK_RECORD_HISTORIES=1 the recording replaces the stored fixture."""
    history = await record_lifecycle(runtime, temporal_client)
    result = await replayer(settings).replay_workflow(history)
    assert result.replay_failure is None
    record = os.environ.get("HELPDESK_RECORD_HISTORIES")
    if record:
        # "1" replaces the original fixture; any other value adds histories/<value>.json
        # beside the older ones (each keeps the code paths of its time under test).
        HISTORIES.mkdir(exist_ok=True)
        target = LIFECYCLE if record == "1" else HISTORIES / f"{record}.json"
        target.write_text(json.dumps(history.to_json_dict(), indent=1))


@pytest.mark.parametrize("settings", [FIXED], indirect=True)
async def test_recorded_histories_replay(settings):
    paths = sorted(HISTORIES.glob("*.json"))
    assert paths, "no recorded histories: record them with HELPDESK_RECORD_HISTORIES=1"
    replay = replayer(settings)
    for path in paths:
        history = WorkflowHistory.from_json(ticket_workflow_id("recorded"), path.read_text())
        result = await replay.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="TicketWorkflow", sandboxed=False)
class ChangedTicketWorkflow(TicketWorkflow):
    """Today's workflow plus one command more after each change (an extra timer)."""

    async def _after_change(self, event: ChangeEvent) -> None:
        await workflow.sleep(timedelta(milliseconds=1))
        await super()._after_change(event)

    @workflow.run
    async def run(self, inp: TicketInput) -> TicketState:
        return await super().run(inp)


@pytest.mark.parametrize("settings", [FIXED], indirect=True)
async def test_replay_catches_a_non_deterministic_change(settings):
    """Negative control: the changed workflow fails replay of the recording, so the fixture
    really guards determinism."""
    others = [w for w in WORKFLOWS if w is not TicketWorkflow]
    broken = Replayer(
        workflows=[*others, ChangedTicketWorkflow], data_converter=data_converter(settings)
    )
    history = WorkflowHistory.from_json(ticket_workflow_id("recorded"), LIFECYCLE.read_text())
    result = await broken.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
