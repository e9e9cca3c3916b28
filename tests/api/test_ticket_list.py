"""GET /tickets: visibility, filters, keyword search, sorting, pagination, audit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, text

from api.app import create_app, prepare_runtime
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import ticket_list, ticket_list_limits
from models.audit import AuditLog
from models.enums import Priority, Role, TicketStatus
from models.ticket import Ticket
from tests.conftest import make_settings
from tests.support.factories import Actor, make_user
from tests.support.ticket_rows import make_ticket

URL = "/api/v1/tickets"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


async def _list(client: httpx.AsyncClient, actor: Actor, **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _numbers(page: dict) -> list[int]:
    return [item["number"] for item in page["items"]]


async def _world(runtime: Runtime) -> dict[str, object]:
    """Two requesters, two agents, a handful of tickets with distinct attributes."""
    alice = await make_user(runtime, Role.END_USER)
    bob = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    other_agent = await make_user(runtime, Role.SUPPORT_AGENT)
    t: dict[str, object] = {"alice": alice, "bob": bob, "agent": agent, "other": other_agent}
    t["a1"] = await make_ticket(
        runtime,
        requester_id=alice.id,
        title="VPN drops every hour",
        description="The tunnel disconnects at the top of the hour",
        status=TicketStatus.OPEN,
        priority=Priority.HIGH,
        assignee_id=agent.id,
        tags=("network", "vpn"),
        created_at=T0,
        updated_at=T0 + timedelta(days=5),
        due_date=T0 + timedelta(days=2),
    )
    t["a2"] = await make_ticket(
        runtime,
        requester_id=alice.id,
        title="Printer jam",
        description="Tray two again",
        status=TicketStatus.IN_PROGRESS,
        priority=Priority.LOW,
        assignee_id=other_agent.id,
        tags=("hardware",),
        created_at=T0 + timedelta(days=1),
        escalated=True,
    )
    t["b1"] = await make_ticket(
        runtime,
        requester_id=bob.id,
        title="Password reset",
        description="Locked out of VPN",
        status=TicketStatus.RESOLVED,
        priority=Priority.CRITICAL,
        tags=("vpn", "account"),
        created_at=T0 + timedelta(days=2),
        due_date=T0 + timedelta(days=1),
    )
    t["b2"] = await make_ticket(
        runtime,
        requester_id=bob.id,
        title="Monitor flickers",
        description="Secondary screen",
        status=TicketStatus.CLOSED,
        priority=Priority.MEDIUM,
        assignee_id=agent.id,
        tags=("hardware",),
        created_at=T0 + timedelta(days=3),
    )
    t["gone"] = await make_ticket(
        runtime,
        requester_id=alice.id,
        title="Deleted one",
        created_at=T0 + timedelta(days=4),
        deleted=True,
    )
    return t


def _n(world: dict[str, object], *names: str) -> list[int]:
    return [world[name].number for name in names]  # type: ignore[attr-defined]


async def test_staff_list_items_and_default_order(client: httpx.AsyncClient, runtime: Runtime):
    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    page = await _list(client, agent)
    # Newest first; the deleted ticket is never listed.
    assert _numbers(page) == _n(w, "b2", "b1", "a2", "a1")
    assert page["total"] == 4 and page["total_is_estimate"] is False
    assert page["has_more"] is False and page["next_cursor"] is None
    first = page["items"][-1]
    assert first["title"] == "VPN drops every hour"
    assert first["tags"] == ["network", "vpn"]
    assert set(first) == {
        "id",
        "number",
        "title",
        "status",
        "priority",
        "category_id",
        "assignee_id",
        "requester_id",
        "tags",
        "escalated",
        "escalation_level",
        "escalated_at",
        "escalated_to",
        "due_date",
        "created_at",
        "updated_at",
        "resolved_at",
        "closed_at",
    }
    assert "description" not in str(page)


async def test_filters(client: httpx.AsyncClient, runtime: Runtime):
    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    other: Actor = w["other"]  # type: ignore[assignment]
    alice: Actor = w["alice"]  # type: ignore[assignment]
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"status": ["OPEN", "IN_PROGRESS"]}, ["a2", "a1"]),
        ({"status": "OPEN,RESOLVED"}, ["b1", "a1"]),
        ({"priority": ["CRITICAL", "LOW"]}, ["b1", "a2"]),
        ({"assignee_id": str(agent.id)}, ["b2", "a1"]),
        ({"assignee_id": "me"}, ["b2", "a1"]),
        ({"assignee_id": str(other.id), "status": "IN_PROGRESS"}, ["a2"]),
        ({"assignee_id": "unassigned"}, ["b1"]),
        ({"requester_id": str(alice.id)}, ["a2", "a1"]),
        ({"tag": "hardware"}, ["b2", "a2"]),
        ({"tag": ["vpn", "network"]}, ["a1"]),
        ({"tag": ["VPN"]}, ["b1", "a1"]),
        ({"tag": ["vpn", "hardware"]}, []),
        ({"escalated": "true"}, ["a2"]),
        ({"escalated": "false", "priority": "HIGH"}, ["a1"]),
        (
            {
                "created_from": (T0 + timedelta(days=1)).isoformat(),
                "created_to": (T0 + timedelta(days=2)).isoformat(),
            },
            ["b1", "a2"],
        ),
        ({"updated_from": (T0 + timedelta(days=4)).isoformat()}, ["a1"]),
        ({"updated_to": "2024-03-02T12:00:00"}, ["a2"]),
    ]
    for params, expected in cases:
        page = await _list(client, agent, **params)
        assert _numbers(page) == _n(w, *expected), params
        assert page["total"] == len(expected), params


async def test_category_filter(client: httpx.AsyncClient, runtime: Runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    user = await make_user(runtime, Role.END_USER)
    created = await client.post(
        "/api/v1/categories", json={"name": "Billing"}, headers=admin.headers
    )
    category = uuid.UUID(created.json()["id"])
    inside = await make_ticket(runtime, requester_id=user.id, category_id=category)
    await make_ticket(runtime, requester_id=user.id)
    page = await _list(client, admin, category_id=str(category))
    assert _numbers(page) == [inside.number]
    assert page["items"][0]["category_id"] == str(category)


async def test_end_user_only_ever_sees_own_tickets(client: httpx.AsyncClient, runtime: Runtime):
    w = await _world(runtime)
    alice: Actor = w["alice"]  # type: ignore[assignment]
    bob: Actor = w["bob"]  # type: ignore[assignment]
    agent: Actor = w["agent"]  # type: ignore[assignment]
    assert _numbers(await _list(client, alice)) == _n(w, "a2", "a1")
    assert _numbers(await _list(client, bob)) == _n(w, "b2", "b1")
    # Asking for someone else's tickets, through any filter, yields nothing of theirs.
    probes: list[dict[str, object]] = [
        {"requester_id": str(bob.id)},
        {"tag": "account"},
        {"q": "password"},
        {"status": "RESOLVED"},
        {"assignee_id": str(agent.id)},
        {"priority": "CRITICAL", "sort": "priority"},
        {"sort": "due_date", "order": "asc"},
        {"sort": "updated_at"},
    ]
    for params in probes:
        page = await _list(client, alice, **params)
        assert all(item["requester_id"] == str(alice.id) for item in page["items"]), params
        assert set(_numbers(page)) <= set(_n(w, "a1", "a2")), params
    assert (await _list(client, alice, requester_id=str(bob.id)))["total"] == 0
    assert _numbers(await _list(client, alice, requester_id="me")) == _n(w, "a2", "a1")


async def test_sorting(client: httpx.AsyncClient, runtime: Runtime):
    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    assert _numbers(await _list(client, agent, order="asc")) == _n(w, "a1", "a2", "b1", "b2")
    assert _numbers(await _list(client, agent, sort="priority")) == _n(w, "b1", "a1", "b2", "a2")
    assert _numbers(await _list(client, agent, sort="priority", order="asc")) == _n(
        w, "a2", "b2", "a1", "b1"
    )
    # Due dates first (earliest first), tickets without one last, in id order.
    due = _numbers(await _list(client, agent, sort="due_date", order="asc"))
    assert due[:2] == _n(w, "b1", "a1")
    assert set(due[2:]) == set(_n(w, "a2", "b2"))
    due_desc = _numbers(await _list(client, agent, sort="due_date", order="desc"))
    assert due_desc[:2] == _n(w, "a1", "b1")
    assert _numbers(await _list(client, agent, sort="updated_at"))[0] == _n(w, "a1")[0]
    for bad in (
        {"sort": "title"},
        {"order": "up"},
        {"status": "LOST"},
        {"colour": "red"},
        {"page": 0},
        {"assignee_id": "nobody"},
        {"created_from": "2024-03-02", "created_to": "2024-03-01"},
    ):
        response = await client.get(URL, params=bad, headers=agent.headers)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "validation_failed"


async def test_ties_break_by_id_and_pages_agree_with_cursors(
    client: httpx.AsyncClient, runtime: Runtime
):
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    user = await make_user(runtime, Role.END_USER)
    statuses = [TicketStatus.OPEN, TicketStatus.IN_PROGRESS, TicketStatus.RESOLVED]
    priorities = list(Priority)
    made = []
    for i in range(13):
        # Pairs share a created_at, so order inside a pair is decided by id alone.
        made.append(
            await make_ticket(
                runtime,
                requester_id=user.id,
                status=statuses[i % 3],
                priority=priorities[i % 4],
                created_at=T0 + timedelta(hours=i // 2),
                due_date=T0 + timedelta(days=i % 5) if i % 2 else None,
            )
        )
    by_id = {t.id: t for t in made}
    newest = sorted(made, key=lambda t: (t.created_at, t.id), reverse=True)
    whole = await _list(client, agent, page_size=20)
    assert [i["id"] for i in whole["items"]] == [str(t.id) for t in newest]

    orderings: list[dict[str, Any]] = [
        {"status": ["OPEN", "IN_PROGRESS", "RESOLVED"]},
        {"sort": "priority"},
        {"sort": "due_date"},
        {"sort": "due_date", "order": "asc"},
        {"sort": "updated_at", "order": "asc"},
        {"priority": ["LOW", "HIGH"]},
        {"assignee_id": "unassigned"},
        {"q": "printer"},
        {"q": "jammed printer", "order": "asc"},
        {},
    ]
    for params in orderings:
        full = [i["id"] for i in (await _list(client, agent, page_size=20, **params))["items"]]
        offset_pages: list[str] = []
        for page_no in (1, 2, 3, 4, 5):
            page = await _list(client, agent, page=page_no, page_size=3, **params)
            offset_pages += [i["id"] for i in page["items"]]
        assert offset_pages == full, params
        keyset: list[str] = []
        cursor = None
        while True:
            extra: dict[str, Any] = {"cursor": cursor} if cursor else {}
            page = await _list(client, agent, page_size=4, **params, **extra)
            keyset += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert keyset == full, params
        assert len(set(full)) == len(full) and set(full) <= {str(i) for i in by_id}

    first = await _list(client, agent, page_size=5)
    assert first["total"] == 13 and first["has_more"] is True
    for bad in (
        {"cursor": "not-a-cursor"},
        {"cursor": first["next_cursor"], "sort": "priority"},
        {"cursor": first["next_cursor"], "page": 2},
        {"page_size": runtime.settings.max_page_size + 1},
        {"page": ticket_list_limits.MAX_OFFSET},
    ):
        response = await client.get(URL, params=bad, headers=agent.headers)
        assert response.status_code == 422, bad


async def test_total_is_capped_and_flagged(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    user = await make_user(runtime, Role.END_USER)
    for i in range(5):
        await make_ticket(runtime, requester_id=user.id, created_at=T0 + timedelta(minutes=i))
    monkeypatch.setattr(ticket_list_limits, "COUNT_CAP", 3)
    page = await _list(client, agent, page_size=2)
    assert page["total"] == 3 and page["total_is_estimate"] is True
    exact = await _list(
        client, agent, page_size=2, created_from=(T0 + timedelta(minutes=3)).isoformat()
    )
    assert exact["total"] == 2 and exact["total_is_estimate"] is False


async def test_keyword_search_over_sealed_text(
    client: httpx.AsyncClient, runtime: Runtime, settings: object
):
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    user = await make_user(runtime, Role.END_USER)
    canary = "Zanzibarquokka" + uuid.uuid4().hex[:8]
    hit = await make_ticket(
        runtime,
        requester_id=user.id,
        title="Cannot print",
        description=f"The {canary} label printer shows error 42",
    )
    await make_ticket(
        runtime,
        requester_id=user.id,
        title="Cannot print either",
        description="Another printer, error 17",
    )
    assert _numbers(await _list(client, agent, q=canary.lower())) == [hit.number]
    assert _numbers(await _list(client, agent, q=f"{canary} ERROR 42")) == [hit.number]
    assert _numbers(await _list(client, agent, q=f"{canary} 17")) == []
    assert len((await _list(client, agent, q="cannot print"))["items"]) == 2
    empty = await client.get(URL, params={"q": "!"}, headers=agent.headers)
    assert empty.status_code == 422

    db_file = Path(runtime.settings.database_url.split("///", 1)[1])
    await runtime.database.engine.dispose()  # flush the WAL into the file as well
    raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    assert canary.encode() not in raw and canary.lower().encode() not in raw
    assert b"label printer" not in raw and b"Cannot print" not in raw


@pytest.mark.parametrize(
    ("drive_cap", "intersect_cap"),
    [(1000, 1000), (0, 1000), (0, 0)],
    ids=["rare: read from the index", "common words: intersected", "common: scanned"],
)
async def test_search_plans_agree(
    client: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    drive_cap: int,
    intersect_cap: int,
):
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    user = await make_user(runtime, Role.END_USER)
    made = []
    for i in range(6):
        words = ["router"] + (["fiber"] if i % 2 else []) + (["outage"] if i % 3 == 0 else [])
        made.append(
            await make_ticket(
                runtime,
                requester_id=user.id,
                title=" ".join(words),
                description=None,
                created_at=T0 + timedelta(hours=i),
                tags=("net",) if i < 4 else ("net", "vip"),
                status=TicketStatus.OPEN if i % 2 else TicketStatus.IN_PROGRESS,
            )
        )
    monkeypatch.setattr(ticket_list_limits, "DRIVE_CAP", drive_cap)
    monkeypatch.setattr(ticket_list_limits, "INTERSECT_CAP", intersect_cap)
    newest = [t.number for t in reversed(made)]
    # (query, tags and words it names, expected numbers newest first). Words alone, in
    # the default order, walk a word's own index and are always counted (0 names).
    cases: list[tuple[dict[str, object], int, list[int]]] = [
        ({"q": "router"}, 0, newest),
        ({"q": "router fiber"}, 0, [n for n in newest if n % 2 == 0]),
        ({"q": "fiber outage"}, 0, [made[3].number]),
        ({"q": "router", "tag": "vip"}, 2, [made[5].number, made[4].number]),
        ({"q": "router", "status": "OPEN"}, 1, [n for n in newest if n % 2 == 0]),
        (
            {"tag": ["net", "vip"], "status": ["OPEN", "IN_PROGRESS"]},
            2,
            [made[5].number, made[4].number],
        ),
        ({"q": "router", "sort": "priority", "order": "asc"}, 1, sorted(newest)),
    ]
    for params, names, expected in cases:
        exact = names == 0 or (drive_cap if names == 1 else intersect_cap) > 0
        page = await _list(client, agent, **params)
        assert _numbers(page) == expected, params
        assert page["total_is_estimate"] is not exact, params
        assert page["total"] == len(expected), params
    # A lower bound when not counted: what the page saw, plus one when there is more.
    paged = await _list(client, agent, q="router", sort="updated_at", page_size=2)
    assert paged["has_more"] is True
    assert paged["total"] == (6 if drive_cap else 3)


async def test_keyword_search_walks_words_in_list_order(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    user = await make_user(runtime, Role.END_USER)
    made = []
    for i in range(6):
        words = ["router"] + (["fiber"] if i % 2 else [])
        made.append(
            await make_ticket(
                runtime,
                requester_id=user.id,
                title=" ".join(words),
                description=None,
                created_at=T0 + timedelta(hours=i),
            )
        )
    await make_ticket(
        runtime, requester_id=user.id, title="router fiber", created_at=T0, deleted=True
    )
    newest = [t.number for t in reversed(made)]
    pages: list[int] = []
    cursor = None
    while True:
        extra: dict[str, Any] = {"cursor": cursor} if cursor else {}
        page = await _list(client, agent, q="router", page_size=4, **extra)
        assert page["total"] == (6 if cursor is None else page["total"])
        pages += _numbers(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == newest
    oldest = await _list(client, agent, q="ROUTER fiber", order="asc")
    assert _numbers(oldest) == [made[1].number, made[3].number, made[5].number]
    assert oldest["total"] == 3 and oldest["total_is_estimate"] is False
    recent = await _list(
        client, agent, q="router", created_from=(T0 + timedelta(hours=3)).isoformat()
    )
    assert _numbers(recent) == newest[:3] and recent["total"] == 3
    # Several words are counted among the driving word's newest rows only: beyond them,
    # the total is a lower bound.
    monkeypatch.setattr(ticket_list_limits, "SEARCH_WINDOW", 2)
    windowed = await _list(client, agent, q="router fiber")
    assert _numbers(windowed) == [made[5].number, made[3].number, made[1].number]
    assert windowed["total"] == 3 and windowed["total_is_estimate"] is True
    assert (await _list(client, agent, q="router nowhere"))["items"] == []


async def test_list_read_is_audited_without_values(client: httpx.AsyncClient, runtime: Runtime):
    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    await _list(client, agent, q="vpn", tag="network", status="OPEN")
    async with runtime.database.transaction() as session:
        row = await session.scalar(
            select(AuditLog)
            .where(AuditLog.action == "ticket.list")
            .order_by(AuditLog.seq.desc())
            .limit(1)
        )
    assert row is not None
    assert row.actor_id == agent.id and row.outcome == "success"
    assert row.details == {"count": 1, "filters": ["q", "statuses", "tags"], "sort": "created_at"}
    assert "vpn" not in str(row.details).lower()


async def test_a_list_in_progress_does_not_hold_up_writers(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    """While a list reads (paused here inside its snapshot), a write commits at once: on
    SQLite the list does not hold the one writer lock. Its audit row still commits before
    the page is answered."""
    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    entered, release = asyncio.Event(), asyncio.Event()
    real = ticket_list.list_tickets

    async def paused(session: Any, *args: Any, **kwargs: Any) -> Any:
        await session.execute(text("SELECT 1"))  # the snapshot has begun
        entered.set()
        await release.wait()
        return await real(session, *args, **kwargs)

    monkeypatch.setattr(ticket_list, "list_tickets", paused)
    listing = asyncio.create_task(client.get(URL, headers=agent.headers))
    async with asyncio.timeout(10):
        await entered.wait()
    async with asyncio.timeout(5), runtime.database.transaction() as session:
        await runtime.audit.record(session, "test.concurrent_write", table="tickets")
    release.set()
    response = await listing
    assert response.status_code == 200 and len(response.json()["items"]) == 4
    async with runtime.database.read() as session:
        actions = list(
            await session.scalars(select(AuditLog.action).order_by(AuditLog.seq.desc()).limit(2))
        )
    assert actions == ["ticket.list", "test.concurrent_write"]


async def test_anonymous_is_refused(client: httpx.AsyncClient):
    response = await client.get(URL)
    assert response.status_code == 401


# --- PostgreSQL ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def pg_client(pg_url: str, var_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    rt = prepare_runtime(build_runtime(make_settings(var_dir, database_url=pg_url)))
    app = create_app(runtime=rt, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, rt
    finally:
        await rt.close()


@pytest.mark.postgres
async def test_core_list_queries_on_postgresql(pg_client: tuple[httpx.AsyncClient, Runtime]):
    client, runtime = pg_client
    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    alice: Actor = w["alice"]  # type: ignore[assignment]
    assert _numbers(await _list(client, agent)) == _n(w, "b2", "b1", "a2", "a1")
    assert _numbers(await _list(client, agent, status=["OPEN", "IN_PROGRESS"])) == _n(w, "a2", "a1")
    assert _numbers(await _list(client, agent, sort="priority")) == _n(w, "b1", "a1", "b2", "a2")
    assert _numbers(await _list(client, agent, sort="due_date", order="asc"))[:2] == _n(
        w, "b1", "a1"
    )
    assert _numbers(await _list(client, agent, tag=["vpn", "network"])) == _n(w, "a1")
    assert _numbers(await _list(client, agent, q="vpn")) == _n(w, "b1", "a1")
    assert _numbers(await _list(client, agent, q="hour vpn", order="asc")) == _n(w, "a1")
    assert _numbers(await _list(client, agent, q="vpn", status="RESOLVED")) == _n(w, "b1")
    assert _numbers(await _list(client, agent, assignee_id="unassigned")) == _n(w, "b1")
    assert _numbers(await _list(client, alice, requester_id=str(w["bob"].id))) == []  # type: ignore[attr-defined]
    assert _numbers(await _list(client, alice, q="vpn")) == _n(w, "a1")
    first = await _list(client, agent, page_size=2, status=["OPEN", "IN_PROGRESS", "CLOSED"])
    second = await _list(
        client,
        agent,
        page_size=2,
        status=["OPEN", "IN_PROGRESS", "CLOSED"],
        cursor=first["next_cursor"],
    )
    assert second["next_cursor"] is None
    assert _numbers(first) + _numbers(second) == _n(w, "b2", "a2", "a1")


async def test_a_commands_reads_do_not_queue_behind_the_writer(runtime: Runtime):
    """A status change authorises against the row and answers with it as the workflow's
    activity left it. Those two reads are snapshots: while another unit of work holds
    SQLite's one writer (as the ticket's own activities do), they still answer; a read
    that audits waits for the writer, as every write does."""
    from helpdesk.services import ticket_reads

    w = await _world(runtime)
    agent: Actor = w["agent"]  # type: ignore[assignment]
    async with runtime.database.read() as session:
        ticket_id = (
            await session.scalars(select(Ticket.id).where(Ticket.deleted_at.is_(None)).limit(1))
        ).one()
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with runtime.database.transaction() as session:
            await runtime.audit.record(session, "test.long_write", table="tickets")
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    try:
        async with asyncio.timeout(10):
            await holding.wait()
        async with asyncio.timeout(5):
            result = await ticket_reads.read_view(
                runtime, agent.id, "SUPPORT_AGENT", ticket_id, audit_action=None
            )
        assert result.ticket.id == ticket_id and result.title
        audited = asyncio.create_task(
            ticket_reads.read_view(runtime, agent.id, "SUPPORT_AGENT", ticket_id)
        )
        await asyncio.sleep(0.3)
        assert not audited.done()  # its audit row waits for the writer
        release.set()
        async with asyncio.timeout(10):
            assert (await audited).ticket.id == ticket_id
    finally:
        release.set()
        await task
