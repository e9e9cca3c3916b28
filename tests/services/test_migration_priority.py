"""Migration 0004: URGENT becomes CRITICAL in every row that holds a priority (tickets, SLA
policies, escalation rules, history entries), and the CHECKs then refuse URGENT. On SQLite
and, when it answers, PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from helpdesk.migrate import upgrade

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _seed(connection: sa.Connection) -> uuid.UUID | str:
    """At revision 0003: a user and one URGENT ticket with an edit and an SLA recompute in
    its history. Returns the ticket's id."""
    meta = sa.MetaData()
    meta.reflect(connection, only=["data_keys", "users", "tickets", "ticket_history"])
    t = meta.tables
    # Reflected, SQLite's UUID columns are CHAR(32): they take the hex form.
    sqlite = connection.dialect.name == "sqlite"
    key_id, user_id, ticket_id = (
        (u.hex if sqlite else u) for u in (uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    )
    connection.execute(
        t["data_keys"].insert().values(id=key_id, kek_id="kek-1", wrapped_key=b"x", created_at=NOW)
    )
    connection.execute(
        t["users"]
        .insert()
        .values(
            id=user_id,
            data_key_id=key_id,
            email_bidx=uuid.uuid4().hex,
            email_enc=b"x",
            role="END_USER",
            is_active=True,
            password_hash="x",
            mfa_enabled=False,
            failed_logins=0,
            lockouts=0,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    connection.execute(
        t["tickets"]
        .insert()
        .values(
            id=ticket_id,
            number=1,
            status="OPEN",
            priority="URGENT",
            priority_rank=4,
            requester_id=user_id,
            escalated=False,
            escalation_level=0,
            version=1,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    history = t["ticket_history"]
    for key, action, changes in (
        ("e1", "edited", {"priority": {"old": "MEDIUM", "new": "URGENT"}}),
        ("e2", "sla_recomputed", {"from_priority": "MEDIUM", "to_priority": "URGENT"}),
        ("e3", "status_changed", {"status": {"old": "OPEN", "new": "IN_PROGRESS"}}),
    ):
        connection.execute(
            history.insert().values(
                id=uuid.uuid4().hex if sqlite else uuid.uuid4(),
                ticket_id=ticket_id,
                event_key=key,
                at=NOW,
                actor_id=None,
                action=action,
                changes=changes,
            )
        )
    return ticket_id


def _check_migrated(connection: sa.Connection, ticket_id: uuid.UUID | str) -> None:
    meta = sa.MetaData()
    meta.reflect(connection, only=["tickets", "sla_policies", "escalation_rules", "ticket_history"])
    t = meta.tables
    assert connection.scalar(sa.select(t["tickets"].c.priority)) == "CRITICAL"
    for table in ("sla_policies", "escalation_rules"):
        values = set(connection.scalars(sa.select(t[table].c.priority)))
        assert "CRITICAL" in values and "URGENT" not in values, table
    changes = {
        key: value
        for key, value in connection.execute(
            sa.select(t["ticket_history"].c.event_key, t["ticket_history"].c.changes)
        )
    }
    assert changes["e1"] == {"priority": {"old": "MEDIUM", "new": "CRITICAL"}}
    assert changes["e2"] == {"from_priority": "MEDIUM", "to_priority": "CRITICAL"}
    assert changes["e3"] == {"status": {"old": "OPEN", "new": "IN_PROGRESS"}}
    for table, column_id in (("tickets", ticket_id),):
        with pytest.raises(IntegrityError):
            with connection.begin_nested():
                connection.execute(
                    t[table].update().where(t[table].c.id == column_id).values(priority="URGENT")
                )


async def _run(url: str) -> None:
    await asyncio.to_thread(upgrade, url, "0003")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            ticket_id = await connection.run_sync(_seed)
        await asyncio.to_thread(upgrade, url, "head")
        async with engine.begin() as connection:
            await connection.run_sync(_check_migrated, ticket_id)
    finally:
        await engine.dispose()


async def test_sqlite_rows_move_from_urgent_to_critical(tmp_path: Path) -> None:
    await _run(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
async def test_postgresql_rows_move_from_urgent_to_critical(pg_server: str) -> None:
    import asyncpg

    name = f"helpdesk_m_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        await _run(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    finally:
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
