"""helpdesk.sqlite_driver: the aiosqlite stand-in under SQLAlchemy's sqlite+aiosqlite dialect.

What a user of the database layer would check: transactions commit and roll back, errors
keep their DB-API classes (an IntegrityError is still one), a snapshot never sees a
concurrent writer's uncommitted rows, a writer in another process makes BEGIN IMMEDIATE wait
(busy timeout) without blocking the event loop, and the point of it all: one thread hop per
statement, the BEGIN riding with the first one; an inline write transaction (a short one
of the hot paths) hops only for its BEGIN and COMMIT, with no other task running between
its statements."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from helpdesk import sqlite_driver
from helpdesk.db import Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}", busy_timeout=2.0)
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield db
    await db.dispose()


class _Hops:
    """Counts the calls that cross to a connection's thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = sqlite_driver.Connection._run

        async def counted(connection: sqlite_driver.Connection, function: object) -> object:
            self.count += 1
            return await real(connection, function)  # type: ignore[arg-type]

        monkeypatch.setattr(sqlite_driver.Connection, "_run", counted)


async def test_a_transaction_commits_and_a_failed_one_leaves_nothing(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'kept')"))
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO t (id, v) VALUES (2, 'dropped')"))
            raise RuntimeError("the request failed")
    async with database.read() as session:
        rows = (await session.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [(1, "kept")]


async def test_errors_keep_their_classes_and_the_connection_stays_usable(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))
    with pytest.raises(OperationalError):
        async with database.read() as session:
            await session.execute(text("SELECT nope FROM t"))
    for n in range(2, 12):  # every pooled connection still works
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO t (id, v) VALUES (:id, 'b')"), {"id": n})
    async with database.read() as session:
        assert (await session.scalar(text("SELECT count(*) FROM t"))) == 11


async def test_rows_description_rowcount_and_executemany(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(
            text("INSERT INTO t (id, v) VALUES (:id, :v)"),
            [{"id": n, "v": f"v{n}"} for n in range(1, 201)],
        )
        changed = await session.execute(text("UPDATE t SET v = 'x' WHERE id <= 50"))
        assert changed.rowcount == 50  # type: ignore[attr-defined]
    async with database.read() as session:
        result = await session.execute(text("SELECT id, v FROM t WHERE id > 190 ORDER BY id"))
        assert list(result.keys()) == ["id", "v"]
        assert [tuple(r) for r in result.all()] == [(n, f"v{n}") for n in range(191, 201)]
        streamed = await session.stream(text("SELECT id FROM t ORDER BY id"))
        assert [r[0] async for r in streamed] == list(range(1, 201))


async def test_a_snapshot_does_not_see_a_concurrent_uncommitted_write(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'old')"))
    writing = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with database.transaction() as session:
            await session.execute(text("UPDATE t SET v = 'new' WHERE id = 1"))
            writing.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await writing.wait()
    async with database.read() as session:
        assert await session.scalar(text("SELECT v FROM t WHERE id = 1")) == "old"
    release.set()
    await task
    async with database.read() as session:
        assert await session.scalar(text("SELECT v FROM t WHERE id = 1")) == "new"


@pytest.mark.parametrize("inline", [False, True], ids=["hops", "inline"])
async def test_a_writer_in_another_process_makes_begin_wait_without_blocking_the_loop(
    database: Database, tmp_path: Path, inline: bool
) -> None:
    other = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (id, v) VALUES (7, 'theirs')")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other.commit)
    started = time.monotonic()
    async with database.transaction(inline=inline) as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (8, 'ours')"))
        await session.execute(text("UPDATE t SET v = 'ours' WHERE id = 8"))
    waited = time.monotonic() - started
    ticking.cancel()
    assert 0.25 <= waited < 2.0
    assert ticks >= 10  # the event loop ran while BEGIN IMMEDIATE waited on its thread
    # Held past the busy timeout: a clear OperationalError, not a hang.
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO t (id, v) VALUES (9, 'late')"))
    finally:
        other.rollback()
        other.close()
    async with database.read() as session:
        assert (await session.scalar(text("SELECT group_concat(v) FROM t ORDER BY id"))) == (
            "theirs,ours"
        )


async def test_one_hop_per_statement_and_the_begin_rides_with_the_first(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):  # warm the pool
        async with database.read() as session:
            await session.execute(text("SELECT 1"))
    hops = _Hops(monkeypatch)
    async with database.read() as session:
        await session.execute(text("SELECT count(*) FROM t"))
    # BEGIN + SELECT; the snapshot's ROLLBACK needs none (it never waits), nor does the
    # pool's reset.
    assert hops.count == 1
    hops.count = 0
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
        await session.execute(text("UPDATE t SET v = 'b' WHERE id = 1"))
    assert hops.count == 3  # BEGIN IMMEDIATE + INSERT, UPDATE, COMMIT
    hops.count = 0
    async with database.read():
        pass
    async with database.transaction():
        pass
    assert hops.count == 0  # a transaction without statements never reaches SQLite


async def test_an_inline_transaction_hops_only_to_begin_and_commit(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
    hops = _Hops(monkeypatch)
    async with database.transaction(inline=True) as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (2, 'b')"))
        await session.execute(text("UPDATE t SET v = 'c' WHERE id = 1"))
        rows = (await session.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "c"), (2, "b")]
        writes = hops.count
        # A snapshot read from the same task is not inlined: a read may be long.
        async with database.read() as snapshot:
            await snapshot.execute(text("SELECT count(*) FROM t"))
            before = hops.count
            await snapshot.execute(text("SELECT count(*) FROM t"))
            assert hops.count - before == 1
        reads = hops.count - writes
    # BEGIN IMMEDIATE + INSERT, then COMMIT (a checkpoint may run in it): the UPDATE and
    # the SELECT ran on the loop's thread.
    assert hops.count - reads == 2
    async with database.read() as session:
        rows = (await session.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [(1, "c"), (2, "b")]


async def test_an_inline_transaction_keeps_errors_and_rolls_back(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
    with pytest.raises(IntegrityError):
        async with database.transaction(inline=True) as session:
            await session.execute(text("INSERT INTO t (id, v) VALUES (2, 'b')"))
            await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))
    async with database.transaction(inline=True) as session:  # the connection still works
        await session.execute(text("INSERT INTO t (id, v) VALUES (3, 'c')"))
        await session.execute(text("INSERT INTO t (id, v) VALUES (4, 'd')"))
    async with database.read() as session:
        rows = (await session.execute(text("SELECT id FROM t ORDER BY id"))).all()
    assert [r[0] for r in rows] == [1, 3, 4]


async def test_an_inline_transaction_lets_no_other_task_run_between_its_statements(
    database: Database,
) -> None:
    """What inlining is for: the writer lock is held for the transaction's own work, not
    also for whatever other tasks of the loop ran between its hops."""
    seen: list[str] = []

    async def other() -> None:
        while True:
            seen.append("other")
            await asyncio.sleep(0)

    async def write(inline: bool) -> list[str]:
        seen.clear()
        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        async with database.transaction(inline=inline) as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('x')"))
            mark = len(seen)
            for _ in range(5):
                await session.execute(text("UPDATE t SET v = v || 'y'"))
            between = seen[mark:]
        task.cancel()
        return between

    assert await write(inline=True) == []
    assert await write(inline=False) != []  # with a hop per statement, the other task ran


async def test_closing_the_engine_ends_every_connection_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}")
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        async with db.read() as session:
            await session.execute(text("SELECT 1"))
    await db.dispose()
    for _ in range(100):
        alive = [
            t
            for t in threading.enumerate()
            if t.name == "helpdesk-sqlite" and t.ident not in before
        ]
        if not alive:
            break
        await asyncio.sleep(0.02)
    assert alive == []
