"""/api/v1/analytics over the ASGI app: figures a manager sees, who may see what, bad
parameters, auditing, and the de-identified export (canaries never leave)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from helpdesk.runtime import Runtime
from models.enums import Role
from tests.support.analytics_timeline import START, Timeline, install_clock
from tests.support.auth import audit_rows
from tests.support.factories import Actor, make_user

K1 = pytest.mark.parametrize("settings", [{"analytics_min_cell_size": 1}], indirect=True)
PERIOD = {
    "from": (START - timedelta(days=1)).isoformat(),
    "to": (START + timedelta(days=7)).isoformat(),
}


@pytest.fixture
async def staff(runtime: Runtime) -> dict[str, Actor]:
    return {
        "manager": await make_user(runtime, Role.MANAGER),
        "admin": await make_user(runtime, Role.ADMINISTRATOR),
        "agent": await make_user(runtime, Role.SUPPORT_AGENT),
        "other_agent": await make_user(runtime, Role.SUPPORT_AGENT),
        "requester": await make_user(runtime, Role.END_USER),
    }


@pytest.fixture
def timeline(
    runtime: Runtime, staff: dict[str, Actor], monkeypatch: pytest.MonkeyPatch
) -> Timeline:
    clock = install_clock(monkeypatch)
    return Timeline(runtime, clock, staff["requester"].id, staff["agent"].id)


async def _worked_tickets(
    line: Timeline, n: int, agent: uuid.UUID | None = None
) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        t = await line.create(priority="HIGH" if i % 2 else "LOW")
        await line.assign(t, agent)
        line.clock.advance(minutes=30)
        await line.reply(t)
        line.clock.advance(hours=2)
        await line.set_status(t, "RESOLVED")
        ids.append(t)
    return ids


@K1
async def test_a_manager_reads_the_overview_series_and_agents(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, Actor], timeline: Timeline
) -> None:
    await _worked_tickets(timeline, 4)
    await timeline.create()
    manager = staff["manager"].headers
    r = await client.get("/api/v1/analytics/overview", params=PERIOD, headers=manager)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["measures"]["created"] == 5 and body["measures"]["resolved"] == 4
    assert body["measures"]["one_touch_rate"] == 1.0
    assert abs(body["measures"]["resolution"]["median_seconds"] - 9000) <= 181
    assert body["backlog"]["total"] == 1
    r = await client.get(
        "/api/v1/analytics/tickets",
        params=PERIOD | {"interval": "day", "group_by": "priority"},
        headers=manager,
    )
    assert r.status_code == 200, r.text
    points = [p for p in r.json()["points"] if p["created"]]
    assert {(p["start"][:10], p["group"], p["created"]) for p in points} == {
        ("2026-03-02", "HIGH", 2),
        ("2026-03-02", "LOW", 2),
        ("2026-03-02", "MEDIUM", 1),
    }
    r = await client.get("/api/v1/analytics/agents", params=PERIOD, headers=manager)
    assert r.status_code == 200, r.text
    rows = {row["agent_id"]: row for row in r.json()["items"]}
    assert rows[str(staff["agent"].id)]["resolved"] == 4
    for action in ("analytics.overview.read", "analytics.tickets.read", "analytics.agents.read"):
        (row,) = await audit_rows(runtime, action)
        assert row.actor_id == staff["manager"].id


@K1
async def test_an_agent_sees_only_their_own_row(
    client: httpx.AsyncClient, staff: dict[str, Actor], timeline: Timeline
) -> None:
    await _worked_tickets(timeline, 2)
    await _worked_tickets(timeline, 2, agent=staff["other_agent"].id)
    r = await client.get("/api/v1/analytics/agents", params=PERIOD, headers=staff["agent"].headers)
    assert r.status_code == 200, r.text
    assert [row["agent_id"] for row in r.json()["items"]] == [str(staff["agent"].id)]
    r = await client.get(
        "/api/v1/analytics/overview", params=PERIOD, headers=staff["agent"].headers
    )
    assert r.status_code == 403


async def test_end_users_and_managers_without_mfa_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, Actor]
) -> None:
    no_mfa = await make_user(runtime, Role.MANAGER, mfa=False)
    for path in ("overview", "tickets", "agents", "export"):
        for actor in (staff["requester"], no_mfa):
            r = await client.get(f"/api/v1/analytics/{path}", headers=actor.headers)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"]


async def test_small_cells_are_null_with_the_default_k(
    client: httpx.AsyncClient, staff: dict[str, Actor], timeline: Timeline
) -> None:
    await _worked_tickets(timeline, 3)
    r = await client.get(
        "/api/v1/analytics/overview", params=PERIOD, headers=staff["manager"].headers
    )
    m = r.json()["measures"]
    assert m["created"] is None and m["resolution"]["median_seconds"] is None
    assert m["suppressed"] is True


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("overview", {"from": "2026-03-05T00:00:00Z", "to": "2026-03-01T00:00:00Z"}),
        ("overview", {"from": "2024-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}),
        ("overview", {"from": "yesterday"}),
        ("overview", {"tag": ""}),
        ("overview", {"priority": "HIGH", "category_id": "cardiology"}),
        ("overview", {"priority": "URGENT"}),
        ("tickets", {"interval": "year"}),
        ("tickets", {"group_by": "requester"}),
        ("tickets", {"priority": "HIGH", "group_by": "tag"}),
        (
            "tickets",
            {"interval": "hour", "from": "2025-01-01T00:00:00Z", "to": "2025-12-01T00:00:00Z"},
        ),
        ("agents", {"sort": "email"}),
        ("agents", {"page_size": "1000"}),
        ("export", {"format": "xlsx"}),
    ],
)
async def test_bad_parameters_answer_422_in_the_error_shape(
    client: httpx.AsyncClient, staff: dict[str, Actor], path: str, params: dict[str, str]
) -> None:
    r = await client.get(
        f"/api/v1/analytics/{path}", params=params, headers=staff["manager"].headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_failed"


# --- the export ---------------------------------------------------------------------------

CANARY = "CANARY-7f3a"


@pytest.mark.parametrize(
    "settings",
    [{"analytics_min_cell_size": 1, "analytics_export_tags": ["billing"]}],
    indirect=True,
)
async def test_the_export_carries_no_identifier_and_no_free_text(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = install_clock(monkeypatch)
    requester = await make_user(
        runtime,
        Role.END_USER,
        email=f"{CANARY.lower()}-pat@example.test",
        full_name=f"{CANARY} Patient",
    )
    agent = await make_user(runtime, Role.SUPPORT_AGENT, full_name=f"{CANARY} Agent")
    manager = await make_user(runtime, Role.MANAGER)
    line = Timeline(runtime, clock, requester.id, agent.id)
    from helpdesk.services import tickets

    async with runtime.database.transaction() as session:
        inserted = await tickets.insert_ticket(
            session,
            runtime,
            requester_id=requester.id,
            data=tickets.NewTicket(
                title=f"{CANARY} title",
                description=f"{CANARY} description",
                tags=("billing", f"{CANARY}-tag", "=cmd|calc"),
            ),
            auto_assign=False,
        )
    t = inserted.id
    line.status[t] = "OPEN"
    await line.assign(t)
    await line.change(t, "edited", priority="HIGH")
    await line.reply(t)
    await line.change(t, "status_changed", note=f"{CANARY} note", status="RESOLVED")
    from helpdesk.services import satisfaction

    await satisfaction.send_due(runtime)
    await satisfaction.answer(
        runtime, t, rating=5, comment=f"{CANARY} csat", user=requester.user, token=None
    )
    secrets = [
        CANARY,
        CANARY.lower(),
        str(t),
        t.hex,
        str(requester.id),
        requester.id.hex,
        str(agent.id),
        agent.id.hex,
        requester.email,
        agent.email,
    ]

    bodies = []
    for fmt in ("csv", "jsonl", "csv"):
        r = await client.get(
            "/api/v1/analytics/export", params=PERIOD | {"format": fmt}, headers=manager.headers
        )
        assert r.status_code == 200, r.text
        text = r.text
        bodies.append(text)
        for secret in secrets:
            assert secret not in text
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)  # no email address at all
    rows = list(csv.DictReader(io.StringIO(bodies[0])))
    assert len(rows) == 1
    row = rows[0]
    assert row["created_date"] == "2026-03-02" and row["priority"] == "HIGH"
    assert row["tags"] == "billing"  # the approved tag only
    assert row["category"] == "" and row["staff_replies"] == "1"
    assert row["status"] == "RESOLVED"
    assert all(not cell.startswith(("=", "+", "-", "@")) for r_ in rows for cell in r_.values())
    (jrow,) = [json.loads(line_) for line_ in bodies[1].splitlines()]
    assert jrow["ticket"] != row["ticket"]  # a new salt per export: no join
    (third,) = csv.DictReader(io.StringIO(bodies[2]))
    assert third["ticket"] != row["ticket"]

    audits = await audit_rows(runtime, "analytics.export")
    assert len(audits) == 3
    details: dict[str, Any] = audits[0].details
    assert details["rows"] == 1 and details["format"] == "csv"
    assert details["sha256"] == hashlib.sha256(bodies[0].encode()).hexdigest()
    assert len(await audit_rows(runtime, "analytics.export.start")) == 3


@pytest.mark.parametrize("settings", [{"analytics_exports_per_hour": 2}], indirect=True)
async def test_exports_are_rate_limited_and_stable_pseudonyms_are_for_administrators(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, Actor], timeline: Timeline
) -> None:
    await _worked_tickets(timeline, 1)
    admin, manager = staff["admin"].headers, staff["manager"].headers
    r = await client.get(
        "/api/v1/analytics/export", params=PERIOD | {"stable_pseudonyms": "true"}, headers=manager
    )
    assert r.status_code == 403
    stable = []
    for _ in range(2):
        r = await client.get(
            "/api/v1/analytics/export",
            params=PERIOD | {"stable_pseudonyms": "true", "format": "jsonl"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        stable.append(json.loads(r.text.splitlines()[0])["ticket"])
    assert stable[0] == stable[1]
    r = await client.get("/api/v1/analytics/export", params=PERIOD, headers=admin)
    assert r.status_code == 429
    assert r.headers.get("retry-after")


@K1
async def test_agents_sort_and_page(
    client: httpx.AsyncClient, staff: dict[str, Actor], timeline: Timeline
) -> None:
    await _worked_tickets(timeline, 1)
    await _worked_tickets(timeline, 3, agent=staff["other_agent"].id)
    manager = staff["manager"].headers
    pages = []
    for page in (1, 2):
        r = await client.get(
            "/api/v1/analytics/agents",
            params=PERIOD | {"sort": "resolved", "order": "desc", "page_size": 1, "page": page},
            headers=manager,
        )
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 2
        pages.append(r.json()["items"][0])
    assert [p["agent_id"] for p in pages] == [str(staff["other_agent"].id), str(staff["agent"].id)]
    assert [p["resolved"] for p in pages] == [3, 1]
    r = await client.get(
        "/api/v1/analytics/agents", params=PERIOD | {"sort": "resolved", "order": "asc"},
        headers=manager,
    )  # fmt: skip
    assert [i["resolved"] for i in r.json()["items"]] == [1, 3]


@pytest.mark.parametrize(
    "settings",
    [{"analytics_min_cell_size": 1, "analytics_export_tags": ["billing"]}],
    indirect=True,
)
async def test_the_event_export_has_one_de_identified_row_per_history_entry(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = install_clock(monkeypatch)
    requester = await make_user(
        runtime, Role.END_USER, email=f"{CANARY.lower()}-ev@example.test", full_name=CANARY
    )
    agent = await make_user(runtime, Role.SUPPORT_AGENT, full_name=f"{CANARY} Agent")
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    line = Timeline(runtime, clock, requester.id, agent.id)
    from helpdesk.services import tickets

    async with runtime.database.transaction() as session:
        inserted = await tickets.insert_ticket(
            session,
            runtime,
            requester_id=requester.id,
            data=tickets.NewTicket(
                title=f"{CANARY} title",
                description=f"{CANARY} description",
                tags=("billing", f"{CANARY}-tag"),
            ),
            auto_assign=False,
        )
    t = inserted.id
    line.status[t] = "OPEN"
    clock.advance(hours=1)
    await line.assign(t)
    await line.change(t, "edited", priority="HIGH", title=f"{CANARY} new title")
    await line.reply(t)
    clock.advance(days=1, hours=3)
    await line.change(t, "status_changed", note=f"{CANARY} note", status="RESOLVED")
    secrets = [CANARY, CANARY.lower(), str(t), t.hex, str(requester.id), requester.id.hex]
    secrets += [str(agent.id), agent.id.hex, requester.email, agent.email]

    params = PERIOD | {"rows": "event", "stable_pseudonyms": "true"}
    r = await client.get("/api/v1/analytics/export", params=params, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].endswith('ticket-events.csv"')
    for secret in secrets:
        assert secret not in r.text
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", r.text)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by = {row["action"]: row for row in rows}
    assert len(rows) == len(by) == 5
    # (The creation's history entry takes the real clock, not the test's: any day will do.)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", by["created"]["event_date"])
    assert {a: by[a]["event_date"] for a in by if a != "created"} == {
        "assigned": "2026-03-02",
        "edited": "2026-03-02",
        "comment_added": "2026-03-02",
        "status_changed": "2026-03-03",
    }
    assert len({row["ticket"] for row in rows}) == 1
    created, resolved = by["created"], by["status_changed"]
    assert (created["status_to"], created["priority_to"]) == ("OPEN", "MEDIUM")
    assert created["actor"] and created["actor"] != by["comment_added"]["actor"]
    assert "title" in created["fields"].split(";")  # the name of a text field, never its text
    assert (resolved["status_from"], resolved["status_to"]) == ("OPEN", "RESOLVED")
    assert "note" in resolved["fields"].split(";")
    # With stable pseudonyms, a ticket's events join its row of the per-ticket export.
    r = await client.get(
        "/api/v1/analytics/export",
        params=PERIOD | {"stable_pseudonyms": "true", "format": "jsonl"},
        headers=admin.headers,
    )
    (ticket_row,) = [json.loads(x) for x in r.text.splitlines()]
    assert ticket_row["ticket"] == created["ticket"]
    assert ticket_row["requester"] == created["actor"]
    r = await client.get(
        "/api/v1/analytics/export", params=PERIOD | {"rows": "event", "format": "jsonl"},
        headers=admin.headers,
    )  # fmt: skip
    events = [json.loads(x) for x in r.text.splitlines()]
    assert sorted(e["action"] for e in events) == sorted(by)
    assert events[0]["ticket"] != created["ticket"]  # a new salt per export
    assert all(e["escalation_level"] is None for e in events)
    (audit,) = [
        a for a in await audit_rows(runtime, "analytics.export") if a.details["rows_per"] == "event"
    ][:1]
    assert audit.details["rows"] == 5


def test_an_event_row_keeps_enumerations_pseudonyms_and_field_names_only() -> None:
    """What a history entry's changes become (the workflow's {"old", "new"} shapes)."""
    from helpdesk.analytics.export import EVENT_COLUMNS, Pseudonyms, event_row

    names = Pseudonyms(b"k" * 32)
    agent, category, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    changes = {
        "assignee_id": {"old": None, "new": str(agent)},
        "priority": {"old": "LOW", "new": "CRITICAL"},
        "category_id": {"old": str(other), "new": str(category)},
        "escalation_level": {"old": 0, "new": 2},
        "title": {"changed": True},
        "tags": {"sealed": f"{CANARY}"},
        "note": {"sealed": f"{CANARY} note"},
        f"{CANARY} odd key": 1,
    }
    row = dict(
        zip(
            EVENT_COLUMNS,
            event_row("t", "2026-03-02", "edited", "a", changes, names, frozenset({str(category)})),
            strict=True,
        )
    )
    assert row["agent"] == names.of("user", agent) and str(agent) not in str(row)
    assert (row["priority_from"], row["priority_to"]) == ("LOW", "CRITICAL")
    assert row["category"] == str(category) and row["escalation_level"] == 2
    assert row["fields"] == "assignee_id;category_id;escalation_level;note;priority;tags;title"
    assert CANARY not in str(row)
    row = dict(
        zip(
            EVENT_COLUMNS,
            event_row(
                "t", "2026-03-02", f"{CANARY}!", "", {"status": {"new": f"{CANARY}"}},
                names, frozenset(),
            ),
            strict=True,
        )
    )  # fmt: skip
    assert row["action"] == "other" and row["status_to"] == "" and CANARY not in str(row)


async def _tagged_ticket(line: Timeline, tags: tuple[str, ...], priority: str) -> uuid.UUID:
    from helpdesk.services import tickets

    async with line.runtime.database.transaction() as session:
        inserted = await tickets.insert_ticket(
            session,
            line.runtime,
            requester_id=line.requester,
            data=tickets.NewTicket(title="t", description=None, tags=tags, priority=priority),
            auto_assign=False,
        )
    line.status[inserted.id] = "OPEN"
    return inserted.id


@pytest.mark.parametrize(
    "settings",
    [{"analytics_min_cell_size": 1, "analytics_export_tags": ["Billing"]}],
    indirect=True,
)
async def test_an_approved_tag_filters_every_analytics_route_and_others_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, Actor], timeline: Timeline
) -> None:
    billing = [
        await _tagged_ticket(timeline, ("billing", "vip"), "HIGH"),
        await _tagged_ticket(timeline, ("BILLING",), "LOW"),
        await _tagged_ticket(timeline, ("billing",), "LOW"),
    ]
    await _tagged_ticket(timeline, ("vip",), "LOW")
    await _tagged_ticket(timeline, (), "HIGH")
    for t in billing[:2]:
        await timeline.assign(t)
        timeline.clock.advance(minutes=20)
        await timeline.reply(t)
        timeline.clock.advance(hours=1)
        await timeline.set_status(t, "RESOLVED")
    manager = staff["manager"].headers
    tag = PERIOD | {"tag": "billing"}
    r = await client.get("/api/v1/analytics/overview", params=tag, headers=manager)
    assert r.status_code == 200, r.text
    m = r.json()["measures"]
    assert (m["created"], m["resolved"], m["first_response"]["count"]) == (3, 2, 2)
    assert abs(m["resolution"]["median_seconds"] - 4800) <= 97
    assert r.json()["backlog"]["total"] == 1  # the third billing ticket is open
    r = await client.get("/api/v1/analytics/overview", params=PERIOD, headers=manager)
    assert r.json()["measures"]["created"] == 5
    r = await client.get(
        "/api/v1/analytics/tickets",
        params=tag | {"interval": "day", "group_by": "priority"},
        headers=manager,
    )
    assert r.status_code == 200, r.text
    created = {(p["group"], p["created"]) for p in r.json()["points"] if p["created"]}
    assert created == {("HIGH", 1), ("LOW", 2)}
    r = await client.get("/api/v1/analytics/export", params=tag, headers=manager)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3 and {row["tags"] for row in rows} == {"Billing"}  # as approved
    reads = await audit_rows(runtime, "analytics.overview.read")
    (audit,) = [a for a in reads if "filter" in a.details]
    assert audit.details["filter"] == {"tag": "billing"}
    r = await client.get(
        "/api/v1/analytics/overview", params=tag | {"priority": "LOW"}, headers=manager
    )
    assert r.status_code == 200, r.text
    m = r.json()["measures"]
    assert (m["created"], m["resolved"]) == (2, 1)  # the tag and the priority together
    assert r.json()["backlog"]["total"] == 1
    for params in (
        PERIOD | {"tag": "vip"},  # not approved: refused, whether or not tickets carry it
        PERIOD | {"tag": "nobody-has-this"},
        PERIOD | {"tag": "vip", "priority": "HIGH"},
    ):
        r = await client.get("/api/v1/analytics/overview", params=params, headers=manager)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_failed"
