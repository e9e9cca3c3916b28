"""Issue 11, the seed's contract for tickets: escalation fields (EscalatedAt, EscalatedTo) on
the ticket and its list items, resolved_at on list items, an escalate call with no fields,
comments' `content`, and 403 (not 422) for what a caller's role forbids."""

from __future__ import annotations

import uuid

import pytest

from helpdesk import errors
from helpdesk.rules.contracts import TicketEdits
from helpdesk.services import ticket_commands
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api

pytestmark = pytest.mark.temporal


async def test_escalation_fields_on_the_ticket_and_the_list(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        # The seed's escalate call has no fields: an empty body, or none at all.
        empty = await http.post(f"/api/v1/tickets/{tid}/escalate", json={}, headers=agent.headers)
        assert empty.status_code == 200, empty.text
        assert empty.json()["escalated_to"] == str(manager.id)
        assert empty.json()["escalated_at"] is not None
        to_agent = await http.post(
            f"/api/v1/tickets/{tid}/escalate",
            json={"escalated_to": str(agent.id)},
            headers=manager.headers,
        )
        assert to_agent.json()["escalated_to"] == str(agent.id)
        again = await http.post(f"/api/v1/tickets/{tid}/escalate", headers=agent.headers)
        assert again.status_code == 200, again.text
        assert again.json()["escalation_level"] == 3
        assert again.json()["escalated_to"] == str(manager.id)

        staff_view = (await http.get(f"/api/v1/tickets/{tid}", headers=agent.headers)).json()
        assert staff_view["escalated_to"] == str(manager.id)
        assert staff_view["escalated_at"] == again.json()["escalated_at"]
        # Who it went to is internal routing: an end user sees that and when, not whom.
        own_view = (await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)).json()
        assert own_view["escalated"] is True and own_view["escalated_at"] is not None
        assert own_view["escalated_to"] is None

        history = (await http.get(f"/api/v1/tickets/{tid}/history", headers=agent.headers)).json()
        escalations = [e for e in history if e["action"] == "escalated"]
        assert [e["changes"]["escalated_to"] for e in escalations] == [
            str(manager.id),
            str(agent.id),
            str(manager.id),
        ]
        assert escalations[0]["changes"]["reason"] == "manual"
        own_history = (
            await http.get(f"/api/v1/tickets/{tid}/history", headers=requester.headers)
        ).json()
        own_escalations = [e for e in own_history if e["action"] == "escalated"]
        assert len(own_escalations) == 3
        assert all("escalated_to" not in e["changes"] for e in own_escalations)

        assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
        assert (await set_status(http, agent, tid, "RESOLVED")).status_code == 200
        listed = (await http.get("/api/v1/tickets", headers=agent.headers)).json()["items"]
        item = next(i for i in listed if i["id"] == tid)
        assert item["resolved_at"] is not None and item["closed_at"] is None
        assert item["escalated_to"] == str(manager.id) and item["escalation_level"] == 3
        assert item["escalated_at"] == staff_view["escalated_at"]
        own = (await http.get("/api/v1/tickets", headers=requester.headers)).json()["items"]
        assert own[0]["resolved_at"] == item["resolved_at"]
        assert own[0]["escalated_at"] is not None and own[0]["escalated_to"] is None


async def test_openapi_carries_the_seed_columns(client):
    schemas = (await client.get("/api/v1/openapi.json")).json()["components"]["schemas"]
    for name in ("TicketOut", "TicketListItem"):
        fields = schemas[name]["properties"]
        for column in ("escalated_at", "escalated_to", "resolved_at", "closed_at"):
            assert column in fields, (name, column)
    assert "content" in schemas["CommentOut"]["properties"]
    assert "CRITICAL" in schemas["Priority"]["enum"] and "URGENT" not in schemas["Priority"]["enum"]
    assert not schemas["EscalateIn"].get("required")


async def test_role_refusals_are_403_with_one_rule(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        note = await http.post(
            f"/api/v1/tickets/{tid}/comments",
            json={"content": "let me in", "is_internal": True},
            headers=requester.headers,
        )
        assert note.status_code == 403, note.text
        assert note.json()["error"]["code"] == "permission_denied"
        assert note.json()["error"]["message"] == "only staff write internal notes"
        by_api = await http.put(
            f"/api/v1/tickets/{tid}",
            json={"priority": "CRITICAL", "title": "x"},
            headers=requester.headers,
        )
        assert by_api.status_code == 403
        # The workflow, asked directly (past the API's check), answers the same.
        with pytest.raises(errors.PermissionDenied) as refused:
            await ticket_commands.edit(
                runtime,
                requester.id,
                Role.END_USER.value,
                uuid.UUID(tid),
                edits=TicketEdits(fields=["priority", "title"], priority="CRITICAL", title="x"),
                request_id=uuid.uuid4().hex,
            )
        assert refused.value.message == by_api.json()["error"]["message"]
        assert (
            refused.value.details == by_api.json()["error"]["details"] == {"fields": ["priority"]}
        )


async def test_comment_text_is_content_and_body_is_a_deprecated_alias(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        url = f"/api/v1/tickets/{tid}/comments"
        added = await http.post(url, json={"content": "It still loops"}, headers=requester.headers)
        assert added.status_code == 201, added.text
        assert added.json()["content"] == "It still loops"
        old_name = await http.post(url, json={"body": "Old client"}, headers=requester.headers)
        assert old_name.status_code == 201 and old_name.json()["content"] == "Old client"
        both = await http.post(url, json={"content": "a", "body": "b"}, headers=requester.headers)
        assert both.status_code == 422
        assert (await http.post(url, json={}, headers=requester.headers)).status_code == 422
        edited = await http.put(
            f"/api/v1/comments/{added.json()['id']}",
            json={"content": "It loops twice"},
            headers=requester.headers,
        )
        assert edited.status_code == 200 and edited.json()["content"] == "It loops twice"
        listed = (await http.get(url, headers=requester.headers)).json()["items"]
        assert [c["content"] for c in listed] == ["It loops twice", "Old client"]
