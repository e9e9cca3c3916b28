"""A ticket's ordinary life through the API (issue 11): created, two comments, an edit, an
escalation, a reassignment and six status changes, then closed. The history-size test and
the UI screenshot script run it."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from helpdesk.runtime import Runtime
from helpdesk.temporal import ticket_workflow_id
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api


async def ordinary_life(runtime: Runtime, temporal_client: Client) -> str:
    """Run the ordinary life through the API; the ticket's id once its workflow completed."""
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    other = await make_user(runtime, Role.SUPPORT_AGENT)
    await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester, priority="HIGH"))["id"]

        async def ok(response):
            assert response.status_code in (200, 201), response.text

        await ok(
            await http.post(
                f"/api/v1/tickets/{tid}/assign",
                json={"agent_id": str(agent.id)},
                headers=agent.headers,
            )
        )
        await ok(await set_status(http, agent, tid, "IN_PROGRESS"))  # 1
        await ok(
            await http.post(
                f"/api/v1/tickets/{tid}/comments",
                json={"content": "Could you try again now?"},
                headers=agent.headers,
            )
        )
        await ok(
            await http.post(
                f"/api/v1/tickets/{tid}/comments",
                json={"content": "Still failing"},
                headers=requester.headers,
            )
        )
        await ok(
            await http.put(
                f"/api/v1/tickets/{tid}", json={"priority": "CRITICAL"}, headers=agent.headers
            )
        )
        await ok(await http.post(f"/api/v1/tickets/{tid}/escalate", headers=agent.headers))
        await ok(await set_status(http, agent, tid, "RESOLVED"))  # 2
        await ok(await set_status(http, requester, tid, "OPEN"))  # 3
        await ok(
            await http.post(
                f"/api/v1/tickets/{tid}/assign",
                json={"agent_id": str(other.id)},
                headers=other.headers,
            )
        )
        await ok(await set_status(http, other, tid, "IN_PROGRESS"))  # 4
        await ok(await set_status(http, other, tid, "RESOLVED"))  # 5
        await ok(await set_status(http, requester, tid, "CLOSED"))  # 6
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(tid))
        async with asyncio.timeout(60):
            await handle.result()
    return str(tid)
