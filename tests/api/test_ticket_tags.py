"""Tags are PHI-capable free text (issue 11): a canary tag written through the API is absent
from the raw bytes of the SQLite file and its WAL, while filtering by that tag still finds
the ticket and every response shows the tag; migration 0005 re-seals existing plain tags."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import JSON, Uuid, bindparam, text

from api.app import prepare_runtime
from helpdesk.migrate import downgrade, upgrade
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import ticket_list, ticket_reads
from helpdesk.services.ticket_list_request import PageRequest, TicketFilter
from helpdesk.settings import Settings
from models.enums import Role
from tests.conftest import make_settings
from tests.support.canary import assert_absent, database_files
from tests.support.factories import make_user
from tests.support.ticket_rows import make_ticket
from tests.support.tickets import create_ticket, ticket_api


@pytest.mark.temporal
async def test_a_canary_tag_is_sealed_yet_found_by_the_filter(runtime, temporal_client):
    canary = f"canary{secrets.token_hex(6)}"
    second = f"dx{secrets.token_hex(6)}"
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:
        created = await create_ticket(http, requester, tags=[canary.upper(), "vpn"])
        other = await create_ticket(http, requester, tags=["vpn"])
        tid = created["id"]
        assert created["tags"] == sorted([canary, "vpn"])
        edited = await http.put(
            f"/api/v1/tickets/{tid}", json={"tags": [canary, second]}, headers=requester.headers
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["tags"] == sorted([canary, second])

        files = database_files(runtime)
        everything = b"".join(files.values())
        assert uuid.UUID(tid).hex.encode() in everything or tid.encode() in everything
        assert_absent(files, canary, second)

        # Exact match through the blind token, in any case; the tag shows decrypted.
        for asked in (canary, canary.upper(), f" {canary} "):
            page = await http.get(
                "/api/v1/tickets", params={"tag": asked.strip()}, headers=agent.headers
            )
            assert page.status_code == 200, page.text
            assert [i["id"] for i in page.json()["items"]] == [tid]
            assert page.json()["items"][0]["tags"] == sorted([canary, second])
        both = await http.get(
            "/api/v1/tickets", params=[("tag", canary), ("tag", second)], headers=agent.headers
        )
        assert [i["id"] for i in both.json()["items"]] == [tid]
        vpn = await http.get("/api/v1/tickets", params={"tag": "vpn"}, headers=agent.headers)
        assert [i["id"] for i in vpn.json()["items"]] == [other["id"]]
        prefix = await http.get(
            "/api/v1/tickets", params={"tag": canary[:-1]}, headers=agent.headers
        )
        assert prefix.json()["items"] == []

        one = await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)
        assert one.json()["tags"] == sorted([canary, second])
        history = await http.get(f"/api/v1/tickets/{tid}/history", headers=agent.headers)
        [edit] = [e for e in history.json() if e["action"] == "edited"]
        assert edit["changes"]["tags"] == {
            "old": sorted([canary, "vpn"]),
            "new": sorted([canary, second]),
        }
        assert_absent(database_files(runtime), canary, second)


async def test_a_moved_sealed_tag_fails_to_open(runtime: Runtime) -> None:
    requester = await make_user(runtime, Role.END_USER)
    a = await make_ticket(runtime, requester_id=requester.id, tags=("alpha",))
    b = await make_ticket(runtime, requester_id=requester.id, tags=("beta",))
    async with runtime.database.transaction() as session:
        await session.execute(
            text(
                "UPDATE ticket_tags SET tag_sealed = (SELECT tag_sealed FROM ticket_tags "
                "WHERE ticket_id = :b) WHERE ticket_id = :a"
            ),
            {"a": a.id.hex, "b": b.id.hex},
        )
    from helpdesk.errors import DataIntegrityError

    with pytest.raises(DataIntegrityError):
        await ticket_reads.read_view(runtime, requester.id, "END_USER", a.id, audit_action=None)


async def test_migration_0005_reseals_existing_plain_tags(tmp_path: Path) -> None:
    """A database at 0004 with plain tags (and a plain tag change in its history) is
    migrated: the tags are sealed, filtering and reading still work, downgrade opens them."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    db = var_dir / "helpdesk.db"
    url = f"sqlite+aiosqlite:///{db}"
    await asyncio.to_thread(upgrade, url)
    await _reseal_round_trip(make_settings(var_dir, database_url=url), lambda: _raw(db))


@pytest.mark.postgres
async def test_migration_0005_reseals_existing_plain_tags_postgres(pg_url, var_dir) -> None:
    await _reseal_round_trip(make_settings(var_dir, database_url=pg_url), None)


async def _reseal_round_trip(settings: Settings, raw: Callable[[], bytes] | None) -> None:
    canary = f"canary{secrets.token_hex(6)}"
    url = settings.database_url
    runtime = prepare_runtime(build_runtime(settings))
    try:
        # Made at head (the ORM's shape), then taken back to 0004 (0006 re-seals the name).
        requester = await make_user(runtime, Role.END_USER)
        ticket = await make_ticket(runtime, requester_id=requester.id)
        await runtime.database.dispose()
        await asyncio.to_thread(downgrade, url, "0004", settings=settings)
        async with runtime.database.transaction() as session:
            await session.execute(
                text("INSERT INTO ticket_tags (ticket_id, tag) VALUES (:t, :tag)").bindparams(
                    bindparam("t", type_=Uuid())
                ),
                [{"t": ticket.id, "tag": canary}, {"t": ticket.id, "tag": "vpn"}],
            )
            await session.execute(
                text(
                    "INSERT INTO ticket_history (id, ticket_id, event_key, at, action, changes)"
                    " VALUES (:id, :t, 'edit-1', CURRENT_TIMESTAMP, 'edited', :c)"
                ).bindparams(
                    bindparam("id", type_=Uuid()),
                    bindparam("t", type_=Uuid()),
                    bindparam("c", type_=JSON()),
                ),
                {
                    "id": uuid.uuid4(),
                    "t": ticket.id,
                    "c": {"tags": {"old": ["vpn"], "new": [canary, "vpn"]}},
                },
            )
        await runtime.database.dispose()
        if raw is not None:
            assert canary.encode() in raw()  # the control: plain before the migration

        await asyncio.to_thread(upgrade, url, settings=settings)
        if raw is not None:
            assert canary.encode() not in raw()
        view = await ticket_reads.read_view(
            runtime, requester.id, "END_USER", ticket.id, audit_action=None
        )
        assert view.tags == sorted([canary, "vpn"])
        async with runtime.database.read() as session:
            listed = await ticket_list.list_tickets(
                session,
                runtime,
                SimpleNamespace(id=requester.id, role=Role.END_USER),
                TicketFilter(tags=(canary,)),
                PageRequest(),
            )
        assert [i.id for i in listed.items] == [ticket.id]
        [entry] = await ticket_reads.history(runtime, requester.id, "END_USER", ticket.id)
        assert entry.changes["tags"] == {"old": ["vpn"], "new": [canary, "vpn"]}
        await runtime.database.dispose()

        await asyncio.to_thread(downgrade, url, "0004", settings=settings)
        async with runtime.database.read() as session:
            plain = (await session.execute(text("SELECT tag FROM ticket_tags"))).scalars().all()
        assert sorted(plain) == sorted([canary, "vpn"])
        await runtime.database.dispose()
        await asyncio.to_thread(upgrade, url, settings=settings)  # leave it at head
    finally:
        await runtime.close()


def _raw(db: Path) -> bytes:
    return db.read_bytes() + _wal(db)


def _wal(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""
