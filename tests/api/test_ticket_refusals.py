"""Every refused ticket access is audited, whatever status it answers (issue 11): someone
else's ticket (404), an unknown id (404), a deleted ticket (410), on every ticket route."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from helpdesk.runtime import Runtime
from models.audit import AuditLog
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, ticket_api

pytestmark = pytest.mark.temporal


async def _denied(runtime: Runtime, actor_id: uuid.UUID) -> list[AuditLog]:
    async with runtime.database.read() as session:
        return list(
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.actor_id == actor_id, AuditLog.outcome == "denied")
                .order_by(AuditLog.seq)
            )
        )


async def test_every_refused_ticket_access_writes_a_denied_row(runtime, temporal_client):
    owner = await make_user(runtime, Role.END_USER)
    other = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    async with ticket_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, owner))["id"]
        h = other.headers
        # Someone else's ticket: 404 on every route an end user may call.
        for method, url, body in (
            ("GET", f"/api/v1/tickets/{tid}", None),
            ("GET", f"/api/v1/tickets/{tid}/history", None),
            ("PUT", f"/api/v1/tickets/{tid}", {"title": "mine now"}),
            ("POST", f"/api/v1/tickets/{tid}/status", {"status": "CLOSED"}),
        ):
            response = await http.request(method, url, json=body, headers=h)
            assert response.status_code == 404, (method, url, response.text)
        rows = await _denied(runtime, other.id)
        assert [(r.action, r.table_name, r.record_id) for r in rows] == [
            ("access.denied", "tickets", tid)
        ] * 4
        assert {r.details["why"] for r in rows} == {"not_visible"}
        assert all(r.ip == "127.0.0.1" and r.request_id for r in rows)
        assert all("Cannot log in" not in str(r.details) for r in rows)
        # The ticket's comments and attachments refuse (and audit) the same caller too.
        for url in (f"/api/v1/tickets/{tid}/comments", f"/api/v1/tickets/{tid}/attachments"):
            response = await http.get(url, headers=h)
            assert response.status_code == 404, (url, response.text)
        rows = (await _denied(runtime, other.id))[4:]
        assert [(r.table_name, r.record_id) for r in rows] == [("tickets", tid)] * 2

        # Staff see every ticket, so their refusals are unknown ids: audited as well.
        unknown = str(uuid.uuid4())
        calls: list[tuple[str, str, dict[str, object] | None]] = [
            ("GET", f"/api/v1/tickets/{unknown}", None),
            ("POST", f"/api/v1/tickets/{unknown}/assign", {"auto": True}),
            ("POST", f"/api/v1/tickets/{unknown}/escalate", {"reason": "complaint"}),
            ("POST", f"/api/v1/tickets/{unknown}/status", {"status": "IN_PROGRESS"}),
        ]
        for method, url, payload in calls:
            response = await http.request(method, url, json=payload, headers=agent.headers)
            assert response.status_code == 404, (method, url, response.text)
        rows = await _denied(runtime, agent.id)
        assert [(r.action, r.record_id, r.details["why"]) for r in rows] == [
            ("access.denied", unknown, "missing")
        ] * 4

        # A deleted ticket answers 410, and that refusal is audited too.
        assert (
            await http.delete(f"/api/v1/tickets/{tid}", headers=admin.headers)
        ).status_code == 204
        for response in (
            await http.get(f"/api/v1/tickets/{tid}", headers=owner.headers),
            await http.delete(f"/api/v1/tickets/{tid}", headers=admin.headers),
            await http.delete(f"/api/v1/tickets/{unknown}", headers=admin.headers),
        ):
            assert response.status_code in (404, 410), response.text
        assert [(r.record_id, r.details["why"]) for r in await _denied(runtime, owner.id)] == [
            (tid, "deleted")
        ]
        assert [(r.record_id, r.details["why"]) for r in await _denied(runtime, admin.id)] == [
            (tid, "deleted"),
            (unknown, "missing"),
        ]
