"""Deactivating an agent through the API hands their open tickets on (issue 11: the
re-assignment was imported from the wrong module under an `except ImportError`, so it
never ran and a deactivated agent kept their open tickets)."""

from __future__ import annotations

import pytest

from helpdesk.temporal import ticket_workflow_id
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, ticket_api
from workflows.ticket import TicketWorkflow

pytestmark = pytest.mark.temporal


async def test_deactivating_an_agent_reassigns_their_open_tickets(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    leaving = await make_user(runtime, Role.SUPPORT_AGENT)
    staying = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        ids = []
        for _ in range(2):
            ticket = await create_ticket(http, requester)
            assigned = await http.post(
                f"/api/v1/tickets/{ticket['id']}/assign",
                json={"agent_id": str(leaving.id)},
                headers=leaving.headers,
            )
            assert assigned.status_code == 200, assigned.text
            ids.append(ticket["id"])

        response = await http.post(f"/api/v1/users/{leaving.id}/deactivate", headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False

        for tid in ids:
            state = await temporal_client.get_workflow_handle(ticket_workflow_id(tid)).query(
                TicketWorkflow.state
            )
            assert state.assignee_id == staying.id
            seen = (await http.get(f"/api/v1/tickets/{tid}", headers=staying.headers)).json()
            assert seen["assignee_id"] == str(staying.id)
