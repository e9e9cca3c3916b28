"""SLA administration over HTTP: seeded defaults, CRUD with validation and conflicts, role
gates, audit rows, the policy snapshot a workflow receives, and the `sla=` list filter."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app, prepare_runtime
from helpdesk.rules.sla_policy import SlaClockKind
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import sla as sla_service
from models.audit import AuditLog
from models.base import utcnow
from models.enums import Priority, Role, TicketStatus
from models.ticket import Ticket
from tests.conftest import make_settings
from tests.support.factories import make_user
from tests.support.ticket_rows import make_ticket

API = "/api/v1"


async def test_fresh_install_has_the_documented_defaults(client: httpx.AsyncClient, runtime):
    manager = await make_user(runtime, Role.MANAGER)
    policies = (await client.get(f"{API}/sla-policies", headers=manager.headers)).json()
    assert [
        (p["priority"], p["first_response_minutes"], p["resolution_minutes"], p["calendar_id"])
        for p in policies
    ] == [
        ("LOW", 1440, 7200, None),
        ("MEDIUM", 480, 4320, None),
        ("HIGH", 120, 480, None),
        ("CRITICAL", 30, 240, None),
    ]
    rules = (
        await client.get(
            f"{API}/escalation-rules", params={"priority": "CRITICAL"}, headers=manager.headers
        )
    ).json()
    assert [(r["clock"], r["threshold_percent"], r["level"], r["actions"]) for r in rules] == [
        ("first_response", 75, 1, ["notify_assignee"]),
        ("first_response", 100, 2, ["escalate", "notify_managers"]),
        ("resolution", 75, 1, ["notify_assignee"]),
        ("resolution", 100, 2, ["escalate", "notify_managers"]),
        ("resolution", 150, 3, ["escalate", "notify_managers", "raise_priority"]),
    ]
    calendars = (await client.get(f"{API}/business-calendars", headers=manager.headers)).json()
    assert [c["name"] for c in calendars] == ["Weekdays 09:00-17:00 UTC"]


async def test_admin_edits_a_policy_and_the_snapshot_follows(client: httpx.AsyncClient, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    policies = (await client.get(f"{API}/sla-policies", headers=admin.headers)).json()
    critical = next(p for p in policies if p["priority"] == "CRITICAL")
    response = await client.put(
        f"{API}/sla-policies/{critical['id']}",
        headers=admin.headers,
        json={"priority": "CRITICAL", "first_response_minutes": 15, "resolution_minutes": 120},
    )
    assert response.status_code == 200, response.text
    assert response.json()["first_response_minutes"] == 15

    async with runtime.database.transaction() as session:
        snap = await sla_service.policy_snapshot(session, runtime.settings, Priority.CRITICAL)
        audit = list(
            await session.scalars(select(AuditLog).where(AuditLog.action == "sla_policy.update"))
        )
    assert snap.first_response_seconds == 15 * 60
    assert snap.resolution_seconds == 120 * 60
    assert {s.key for s in snap.steps} == {
        "first_response:75",
        "first_response:100",
        "resolution:75",
        "resolution:100",
        "resolution:150",
    }
    assert audit[0].actor_id == admin.id
    assert audit[0].details["before"]["first_response_minutes"] == 30
    assert audit[0].details["after"]["first_response_minutes"] == 15


async def test_policy_validation_and_conflicts(client: httpx.AsyncClient, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    dup = await client.post(
        f"{API}/sla-policies",
        headers=admin.headers,
        json={"priority": "HIGH", "first_response_minutes": 10, "resolution_minutes": 20},
    )
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "conflict"
    backwards = await client.post(
        f"{API}/sla-policies",
        headers=admin.headers,
        json={"priority": "HIGH", "first_response_minutes": 30, "resolution_minutes": 20},
    )
    assert backwards.status_code == 422
    for bad in (
        {"priority": "HIGH", "first_response_minutes": 0, "resolution_minutes": 20},
        {"priority": "SOON", "first_response_minutes": 1, "resolution_minutes": 20},
        {"priority": "HIGH", "first_response_minutes": 1, "resolution_minutes": 2, "extra": True},
    ):
        response = await client.post(f"{API}/sla-policies", headers=admin.headers, json=bad)
        assert response.status_code == 422, bad
    missing = await client.get(
        f"{API}/sla-policies/00000000-0000-0000-0000-000000000000", headers=admin.headers
    )
    assert missing.status_code == 404


async def test_deleted_policy_falls_back_to_built_in_targets(client: httpx.AsyncClient, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    policies = (await client.get(f"{API}/sla-policies", headers=admin.headers)).json()
    low = next(p for p in policies if p["priority"] == "LOW")
    await client.put(
        f"{API}/sla-policies/{low['id']}",
        headers=admin.headers,
        json={"priority": "LOW", "first_response_minutes": 1, "resolution_minutes": 2},
    )
    deleted = await client.delete(f"{API}/sla-policies/{low['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    async with runtime.database.transaction() as session:
        snap = await sla_service.policy_snapshot(session, runtime.settings, "LOW")
    assert (snap.first_response_seconds, snap.resolution_seconds) == (24 * 3600, 5 * 86400)
    # ...and the priority can have a policy again.
    created = await client.post(
        f"{API}/sla-policies",
        headers=admin.headers,
        json={"priority": "LOW", "first_response_minutes": 60, "resolution_minutes": 600},
    )
    assert created.status_code == 201


async def test_calendars_validate_attach_and_refuse_deletion_in_use(
    client: httpx.AsyncClient, runtime
):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    body = {
        "name": "Berlin office",
        "time_zone": "Europe/Berlin",
        "weekly_hours": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]]},
        "holidays": ["2025-12-25", "2025-12-24", "2025-12-25"],
    }
    created = await client.post(f"{API}/business-calendars", headers=admin.headers, json=body)
    assert created.status_code == 201, created.text
    cal = created.json()
    assert cal["holidays"] == ["2025-12-24", "2025-12-25"]
    for bad in (
        {**body, "name": "x", "time_zone": "Mars/Olympus"},
        {**body, "name": "y", "weekly_hours": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}},
        {**body, "name": "z", "weekly_hours": {"mon": [["9am", "5pm"]]}},
        {**body, "name": "w", "weekly_hours": {"someday": [["09:00", "12:00"]]}},
        {**body, "name": "v", "weekly_hours": {}},
    ):
        response = await client.post(f"{API}/business-calendars", headers=admin.headers, json=bad)
        assert response.status_code == 422, (bad, response.text)
    dup = await client.post(f"{API}/business-calendars", headers=admin.headers, json=body)
    assert dup.status_code == 409

    policies = (await client.get(f"{API}/sla-policies", headers=admin.headers)).json()
    medium = next(p for p in policies if p["priority"] == "MEDIUM")
    attached = await client.put(
        f"{API}/sla-policies/{medium['id']}",
        headers=admin.headers,
        json={
            "priority": "MEDIUM",
            "first_response_minutes": 60,
            "resolution_minutes": 480,
            "calendar_id": cal["id"],
        },
    )
    assert attached.status_code == 200
    async with runtime.database.transaction() as session:
        snap = await sla_service.policy_snapshot(session, runtime.settings, "MEDIUM")
    assert snap.calendar is not None and snap.calendar.time_zone == "Europe/Berlin"
    in_use = await client.delete(f"{API}/business-calendars/{cal['id']}", headers=admin.headers)
    assert in_use.status_code == 409
    bogus = await client.put(
        f"{API}/sla-policies/{medium['id']}",
        headers=admin.headers,
        json={
            "priority": "MEDIUM",
            "first_response_minutes": 60,
            "resolution_minutes": 480,
            "calendar_id": "00000000-0000-0000-0000-000000000000",
        },
    )
    assert bogus.status_code == 422


async def test_escalation_rules_crud(client: httpx.AsyncClient, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    requester = await make_user(runtime, Role.END_USER)
    body = {
        "priority": "HIGH",
        "clock": "resolution",
        "threshold_percent": 200,
        "actions": ["escalate", "reassign", "escalate"],
        "level": 4,
        "target_user_id": str(agent.id),
    }
    created = await client.post(f"{API}/escalation-rules", headers=admin.headers, json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["actions"] == ["escalate", "reassign"]
    assert (
        await client.post(f"{API}/escalation-rules", headers=admin.headers, json=body)
    ).status_code == 409
    for bad in (
        {**body, "threshold_percent": 0},
        {**body, "actions": []},
        {**body, "actions": ["page_the_ceo"]},
        {**body, "clock": "lunch"},
        {**body, "threshold_percent": 300, "target_user_id": str(requester.id)},
    ):
        response = await client.post(f"{API}/escalation-rules", headers=admin.headers, json=bad)
        assert response.status_code == 422, bad
    disabled = await client.put(
        f"{API}/escalation-rules/{rule['id']}",
        headers=admin.headers,
        json={**body, "enabled": False},
    )
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    async with runtime.database.transaction() as session:
        snap = await sla_service.policy_snapshot(session, runtime.settings, "HIGH")
    assert "resolution:200" not in {s.key for s in snap.steps}
    gone = await client.delete(f"{API}/escalation-rules/{rule['id']}", headers=admin.headers)
    assert gone.status_code == 204
    assert (
        await client.get(f"{API}/escalation-rules/{rule['id']}", headers=admin.headers)
    ).status_code == 404


async def test_role_gates(client: httpx.AsyncClient, runtime):
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    admin_without_mfa = await make_user(runtime, Role.ADMINISTRATOR, mfa=False)
    body = {"priority": "LOW", "first_response_minutes": 1, "resolution_minutes": 2}
    assert (await client.get(f"{API}/sla-policies")).status_code == 401
    assert (await client.get(f"{API}/sla-policies", headers=agent.headers)).status_code == 403
    assert (
        await client.post(f"{API}/sla-policies", json=body, headers=manager.headers)
    ).status_code == 403
    no_mfa = await client.post(f"{API}/sla-policies", json=body, headers=admin_without_mfa.headers)
    assert no_mfa.status_code == 403
    assert no_mfa.json()["error"]["code"] == "mfa_required"
    requester = await make_user(runtime, Role.END_USER)
    ticket = await make_ticket(runtime, requester_id=requester.id)
    denied = await client.post(
        f"{API}/tickets/{ticket.id}/escalate",
        headers=requester.headers,
        json={"reason": "complaint"},
    )
    assert denied.status_code == 403
    bad_reason = await client.post(
        f"{API}/tickets/{ticket.id}/escalate",
        headers=agent.headers,
        json={"reason": "my free text with a name"},
    )
    assert bad_reason.status_code == 422


async def test_openapi_documents_the_sla_routes(client: httpx.AsyncClient):
    doc = (await client.get(f"{API}/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/api/v1/sla-policies",
        "/api/v1/escalation-rules",
        "/api/v1/business-calendars",
        "/api/v1/tickets/{ticket_id}/escalate",
    ):
        assert path in paths
    get_list = paths["/api/v1/sla-policies"]["get"]["responses"]["200"]
    assert get_list["content"]["application/json"]["schema"]["items"]["$ref"].endswith("PolicyOut")
    escalate = paths["/api/v1/tickets/{ticket_id}/escalate"]["post"]
    assert escalate["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "EscalateOut"
    )
    reason = doc["components"]["schemas"]["EscalationReason"]
    assert "customer_impact" in reason["enum"]


async def test_sla_filter_reads_the_due_dates(runtime: Runtime):
    requester = await make_user(runtime, Role.END_USER)
    now = utcnow()
    overdue = await make_ticket(
        runtime, requester_id=requester.id, due_date=now - timedelta(minutes=1)
    )
    risky = await make_ticket(
        runtime, requester_id=requester.id, due_date=now + timedelta(minutes=10)
    )
    calm = await make_ticket(runtime, requester_id=requester.id, due_date=now + timedelta(hours=10))
    answered_late = await make_ticket(
        runtime, requester_id=requester.id, status=TicketStatus.RESOLVED
    )
    waiting = await make_ticket(
        runtime,
        requester_id=requester.id,
        status=TicketStatus.RESOLVED,
        due_date=now - timedelta(hours=1),
    )
    async with runtime.database.transaction() as session:
        for ticket, risk, breach in (
            (overdue, now - timedelta(minutes=5), None),
            (risky, now - timedelta(minutes=1), None),
            (calm, now + timedelta(hours=5), None),
            (answered_late, None, now - timedelta(days=1)),
            (waiting, now - timedelta(hours=2), None),
        ):
            row = await session.get(Ticket, ticket.id)
            assert row is not None
            row.sla_at_risk_at = risk
            row.sla_breached_at = breach
    async with runtime.database.transaction() as session:
        breached = set(
            await session.scalars(
                select(Ticket.id).where(sla_service.sla_condition("breached", now))
            )
        )
        at_risk = set(
            await session.scalars(
                select(Ticket.id).where(sla_service.sla_condition("at_risk", now))
            )
        )
    assert breached == {overdue.id, answered_late.id}
    assert at_risk == {risky.id}

    # The same through the API, as an agent's queue view and as the requester.
    from api.app import create_app

    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    app = create_app(runtime=runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for who in (agent, requester):
            for value, expected in (("breached", breached), ("at_risk", at_risk)):
                page = await http.get(f"{API}/tickets", params={"sla": value}, headers=who.headers)
                assert page.status_code == 200, page.text
                assert {uuid.UUID(item["id"]) for item in page.json()["items"]} == expected
        bad = await http.get(f"{API}/tickets", params={"sla": "late"}, headers=agent.headers)
        assert bad.status_code == 422


@pytest.mark.postgres
async def test_crud_and_snapshot_on_postgres(pg_url: str, tmp_path):
    settings = make_settings(tmp_path, database_url=pg_url)
    rt = prepare_runtime(build_runtime(settings))
    try:
        app = create_app(runtime=rt, run_worker=False)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            admin = await make_user(rt, Role.ADMINISTRATOR)
            policies = (await http.get(f"{API}/sla-policies", headers=admin.headers)).json()
            assert len(policies) == 4
            rule = await http.post(
                f"{API}/escalation-rules",
                headers=admin.headers,
                json={
                    "priority": "LOW",
                    "clock": "first_response",
                    "threshold_percent": 50,
                    "actions": ["notify_assignee"],
                },
            )
            assert rule.status_code == 201
            dup = await http.post(
                f"{API}/escalation-rules",
                headers=admin.headers,
                json={
                    "priority": "LOW",
                    "clock": "first_response",
                    "threshold_percent": 50,
                    "actions": ["notify_assignee"],
                },
            )
            assert dup.status_code == 409
        async with rt.database.transaction() as session:
            snap = await sla_service.policy_snapshot(session, settings, "LOW")
        assert [
            s.threshold_percent for s in snap.steps if s.clock is SlaClockKind.FIRST_RESPONSE
        ] == [50, 75, 100]
    finally:
        await rt.close()
