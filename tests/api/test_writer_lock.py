"""Issue 11's wedge: no wait on the SQLite writer lock is without bound.

A request whose session dependency took the writer lock before its principal was resolved
waited for itself for ever when authentication needed a write (a stale last-seen stamp):
every later writer queued behind it, /readyz included. Now authentication always resolves
first, a nested transaction of the same task fails loudly, any other waiter gives up after
the busy timeout with a 503 + Retry-After, /readyz says not ready within about 2 s, and
the SQLite driver never leaves a statement waiting on a stopped connection."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text, update

from helpdesk import sqlite_driver
from helpdesk.db import Database, NestedTransactionError, WriterBusy
from models.base import utcnow
from models.enums import Role
from models.user import AuthSession
from tests.support.factories import Actor, make_user

API = "/api/v1"


@contextlib.asynccontextmanager
async def writer_held(database: Database) -> AsyncIterator[None]:
    """Another task holds the writer lock (an open write transaction) for the block."""
    taken, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with database.transaction() as session:
            await session.execute(text("SELECT 1"))
            taken.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await taken.wait()
    try:
        yield
    finally:
        release.set()
        await holder


async def _make_stale(runtime, actor: Actor) -> None:
    """Age the actor's session so that its next request stamps last-seen (a write)."""
    async with runtime.database.transaction() as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == actor.session_id)
            .values(last_seen_at=utcnow() - timedelta(seconds=60))
        )


@pytest.mark.parametrize("path", ["/sla-policies", "/escalation-rules", "/business-calendars"])
async def test_routes_listing_the_session_first_do_not_wedge(
    client: httpx.AsyncClient, runtime, path: str
):
    """The SLA routes list SessionDep before the admin gate: with a stale session the
    principal's own write transaction used to wait for the request's, for ever."""
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    await _make_stale(runtime, admin)
    async with asyncio.timeout(10):
        response = await client.get(f"{API}{path}", headers=admin.headers)
    assert response.status_code == 200, response.text
    # ...and the writer is free afterwards.
    async with asyncio.timeout(5):
        assert (await client.get("/readyz")).status_code == 200


async def test_a_nested_transaction_of_the_same_task_fails_at_once(runtime):
    database = runtime.database
    started = time.monotonic()
    with pytest.raises(NestedTransactionError):
        async with database.transaction():
            async with database.transaction():
                pass  # pragma: no cover - never entered
    assert time.monotonic() - started < 1
    # The outer block released the lock on its way out.
    async with asyncio.timeout(2), database.transaction() as session:
        assert (await session.execute(text("SELECT 1"))).scalar() == 1


async def test_a_waiter_gives_up_after_the_busy_timeout(tmp_path: Path):
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}", busy_timeout=0.3)
    try:
        async with writer_held(database):
            started = time.monotonic()
            with pytest.raises(WriterBusy):
                async with database.transaction():
                    pass  # pragma: no cover - never entered
            assert 0.25 < time.monotonic() - started < 2
        # Nothing of the refused waiter is left in the queue.
        async with asyncio.timeout(2), database.transaction():
            pass
    finally:
        await database.dispose()


@pytest.mark.parametrize("settings", [{"database_busy_timeout_seconds": 0.5}], indirect=True)
async def test_a_busy_writer_answers_503_with_retry_after(client: httpx.AsyncClient, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    async with writer_held(runtime.database):
        started = time.monotonic()
        response = await client.get(f"{API}/sla-policies", headers=admin.headers)
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "unavailable"
    assert elapsed < 3


async def test_readyz_says_not_ready_while_the_writer_is_stuck(client: httpx.AsyncClient, runtime):
    async with writer_held(runtime.database):
        started = time.monotonic()
        ready = await client.get("/readyz")
        elapsed = time.monotonic() - started
        healthy = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"]
    assert ready.json()["error"]["code"] == "unavailable"
    assert 1.5 < elapsed < 4
    assert healthy.status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_work_queued_on_a_stopped_connection_fails_instead_of_waiting(tmp_path: Path):
    """SQLAlchemy's terminate (`stop`) racing a statement or rollback: the awaiting task
    must get an error, not wait for a thread that has ended."""
    for _ in range(20):
        connection = await sqlite_driver.connect(str(tmp_path / "stop.db"))
        connection.stop()
        with pytest.raises(ValueError, match=r"connection closed|no active connection"):
            async with asyncio.timeout(2):
                await connection._run(lambda: None)


async def test_a_rollback_after_a_cancelled_first_statement_ends_its_transaction(tmp_path: Path):
    """A request cancelled (its deadline) while its transaction's first statement waits on
    the connection's thread: the rollback that follows must not be skipped as "nothing
    open", or the statement's BEGIN IMMEDIATE runs afterwards and the pool takes back a
    connection that holds SQLite's write lock (every other writer then waits the whole
    busy timeout)."""
    connection = await sqlite_driver.connect(str(tmp_path / "race.db"), isolation_level=None)
    try:
        await connection.execute("CREATE TABLE t (v TEXT)")
        gate = threading.Event()
        blocker = asyncio.create_task(connection._run(gate.wait))  # the thread is busy
        cursor = connection.cursor()
        await cursor.execute("BEGIN IMMEDIATE")  # pending: rides with the next statement
        insert = asyncio.create_task(cursor.execute("INSERT INTO t VALUES ('x')"))
        await asyncio.sleep(0.05)
        insert.cancel()
        rollback = asyncio.create_task(connection.rollback())
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        async with asyncio.timeout(5):
            await rollback
        assert not await connection._run(lambda: connection._conn.in_transaction)
        assert (await (await connection.execute("SELECT count(*) FROM t")).fetchall()) == [(0,)]
    finally:
        await connection.close()
