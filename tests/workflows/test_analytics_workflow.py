"""Analytics on the real stack: tickets driven through the API and their Temporal
workflows (real worker, real dev server) show up in /analytics, the CSAT loop runs (email
through the file backend, answer by token, counted), and the rollups the workflow's
activities kept equal the rebuilt ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from helpdesk.analytics.rebuild import rebuild
from models.analytics import AnalyticsRollup
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api

pytestmark = pytest.mark.temporal


@pytest.mark.parametrize("settings", [{"analytics_min_cell_size": 1}], indirect=True)
async def test_a_ticket_s_life_through_its_workflow_is_counted(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
        r = await http.post(
            f"/api/v1/tickets/{tid}/assign", json={"agent_id": str(agent.id)}, headers=agent.headers
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            json={"content": "Try again now", "is_internal": False},
            headers=agent.headers,
        )
        assert r.status_code in (200, 201), r.text
        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
        assert (await set_status(http, agent, tid, "RESOLVED")).status_code == 200
        # The requester's reply on a RESOLVED ticket reopens it (the workflow decides).
        r = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            json={"content": "Still broken"},
            headers=requester.headers,
        )
        assert r.status_code in (200, 201), r.text
        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
        assert (await set_status(http, agent, tid, "RESOLVED")).status_code == 200

        # The CSAT loop: each resolution's survey went out from the persist activity (the
        # first one was withdrawn by the reopen); the second link's token answers.
        bodies = [m["body"] for m in runtime.email.messages() if m["to"] == requester.email]
        found = [re.search(r"#token=([\w-]+)", b) for b in bodies]
        tokens = [m.group(1) for m in found if m is not None]
        assert len(tokens) == 2
        r = await http.post(
            f"/api/v1/tickets/{tid}/satisfaction", json={"rating": 4, "token": tokens[-1]}
        )
        assert r.status_code == 201, r.text

        now = datetime.now(UTC)
        period = {
            "from": (now - timedelta(hours=2)).isoformat(),
            "to": (now + timedelta(hours=1)).isoformat(),
        }
        r = await http.get("/api/v1/analytics/overview", params=period, headers=manager.headers)
        assert r.status_code == 200, r.text
        m = r.json()["measures"]
        assert (m["created"], m["resolved"], m["reopened"]) == (1, 1, 1)
        assert m["first_response"]["count"] == 1
        assert m["reopen_rate"] == 1.0 and m["one_touch_rate"] == 1.0
        assert m["csat"] == {"sent": 1, "answered": 1, "score": 1.0, "response_rate": 1.0}
        r = await http.get("/api/v1/analytics/agents", params=period, headers=agent.headers)
        assert r.json()["items"][0]["resolved"] == 1

    async with runtime.database.read() as session:
        kept = {
            (c.dim, c.hour, c.value): c.metrics
            for c in await session.scalars(select(AnalyticsRollup))
        }
    async with runtime.database.transaction() as session:
        await rebuild(session)
    async with runtime.database.read() as session:
        rebuilt = {
            (c.dim, c.hour, c.value): c.metrics
            for c in await session.scalars(select(AnalyticsRollup))
        }
    assert rebuilt == kept
