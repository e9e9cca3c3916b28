"""The async database engine and the unit-of-work session factory.

SQLite (the embedded default) runs in WAL mode with ``secure_delete`` on (deleted PHI is
overwritten, not left in free pages) and foreign keys enforced. Every SQLite transaction
starts with ``BEGIN IMMEDIATE`` so a read-then-write transaction never fails with a stale
snapshot under concurrency; PostgreSQL uses its default READ COMMITTED isolation.

PostgreSQL's pooled connections are checked before use when they sat idle for longer than
`PING_AFTER_IDLE_SECONDS`, not on every checkout (see `_configure_postgres`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from helpdesk import sqlite_driver

# Execution option marking a read-only unit of work (`Database.read`).
READONLY_OPTION = "helpdesk_readonly"

# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed
# out; one used more recently is trusted, as HikariCP's aliveBypassWindowMs does.
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "helpdesk_idle_since"


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def create_engine(url: str, *, echo: bool = False, busy_timeout: float = 30.0) -> AsyncEngine:
    """An async engine configured for the help desk on SQLite or PostgreSQL."""
    # A pool with every connection out makes the next checkout wait: no longer than a
    # lock would (sqlalchemy.exc.TimeoutError, which the API answers 503).
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs["pool_timeout"] = busy_timeout  # a queue pool (memory: a static one)
        kwargs["connect_args"] = {"timeout": busy_timeout}
        # One thread hop per statement instead of aiosqlite's four (helpdesk.sqlite_driver).
        kwargs["module"] = sqlite_driver.dbapi()
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_timeout=busy_timeout)
        # Short OLTP queries: JIT compilation and parallel workers cost more than they save.
        kwargs["connect_args"] = {
            "server_settings": {"jit": "off", "max_parallel_workers_per_gather": "0"}
        }
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _configure_sqlite(engine, busy_timeout)
    else:
        _configure_postgres(engine)
    return engine


def _configure_postgres(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only when it sat idle a while.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout; with asyncpg that is a BEGIN,
    an empty query and a ROLLBACK, 0.7 ms measured here, paid up to three times per request
    (authentication, the read, the audit row). A connection the pool handed out within the
    last `PING_AFTER_IDLE_SECONDS` has just worked; an older one (the database may have
    restarted, a firewall may have dropped it) is pinged, and a dead one is replaced
    before anyone uses it. A connection that dies within the window fails its statement;
    SQLAlchemy then invalidates the whole pool and the API answers that one request 503
    with Retry-After (`api.errors`), never a 500."""

    @event.listens_for(engine.sync_engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards this connection and checks out another (a fresh one).
            raise sa_exc.DisconnectionError("pooled connection is gone") from exc


def _configure_sqlite(engine: AsyncEngine, busy_timeout: float) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit transactions are not enough).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA mmap_size=268435456")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A read-only unit of work takes a WAL snapshot (plain BEGIN): it neither waits for
        # nor blocks the one writer.
        readonly = conn.get_execution_options().get(READONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class NestedTransactionError(RuntimeError):
    """A task asked for a write transaction while it already holds the writer lock.

    Waiting would never end (the lock is released only when this very task goes on), so it
    is a bug in the caller: open the inner work on the outer session, or after it."""


class WriterBusy(sa_exc.OperationalError):
    """The writer lock was not free within the busy timeout: retryable, like SQLite's own
    "database is locked" (the API answers 503 with Retry-After, activities retry)."""

    def __init__(self, waited: float) -> None:
        super().__init__(
            "BEGIN IMMEDIATE",
            None,
            sqlite3.OperationalError(f"database is locked (writer busy for {waited:g} s)"),
        )


class WriterLock:
    """One event loop's SQLite writer lock: FIFO, aware of its owner, and bounded.

    A nested attempt by the owning task raises `NestedTransactionError` at once (it would
    otherwise wait for itself for ever); any other waiter gives up with `WriterBusy` after
    its timeout, so no request or activity waits without bound."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.owner: asyncio.Task[Any] | None = None

    def locked(self) -> bool:
        return self._lock.locked()

    @asynccontextmanager
    async def hold(self, wait: float) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self.owner is task:
            raise NestedTransactionError(
                "a write transaction was opened inside another one of the same task"
            )
        try:
            async with asyncio.timeout(wait):
                await self._lock.acquire()
        except TimeoutError:
            raise WriterBusy(wait) from None
        self.owner = task
        try:
            yield
        finally:
            self.owner = None
            self._lock.release()


class Database:
    """Owns the engine and hands out sessions: one transaction per request or activity."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.busy_timeout = busy_timeout
        self.engine = create_engine(url, echo=echo, busy_timeout=busy_timeout)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        options: dict[str, Any] = {READONLY_OPTION: True}
        if not self.is_sqlite:
            options["postgresql_readonly"] = True
        self.read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**options), expire_on_commit=False
        )
        # SQLite has one writer. Every transaction here is BEGIN IMMEDIATE, so two in this
        # process would otherwise meet in SQLite's busy handler, which polls with sleeps of
        # up to 100 ms: queue them FIFO on the event loop instead (one lock per loop).
        # Other processes (a separate worker) still meet in the busy handler. The queue is
        # bounded by the busy timeout, like SQLite's own (`WriterLock`).
        self._write_locks: dict[asyncio.AbstractEventLoop, WriterLock] = {}

    def _write_lock(self) -> WriterLock | None:
        if not self.is_sqlite:
            return None
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            for old in [lp for lp in self._write_locks if lp.is_closed()]:
                del self._write_locks[old]
            lock = self._write_locks[loop] = WriterLock()
        return lock

    @asynccontextmanager
    async def transaction(
        self, *, wait: float | None = None, inline: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session whose work commits at the end of the block, or rolls back on error.

        On SQLite it first queues for this event loop's writer lock, at most `wait` seconds
        (default: the busy timeout), then raises `WriterBusy`; a nested transaction of the
        same task raises `NestedTransactionError`.

        `inline=True` is for short transactions of a few indexed statements (a ticket's
        creation or change, a notification claim): on SQLite, once the transaction has
        begun, its statements run on the event loop's thread instead of a thread hop
        each (`helpdesk.sqlite_driver.INLINE_WRITES`). The writer lock is then held for
        the transaction's own work: between hops, other tasks of the loop ran while every
        other writer waited. Not for bulk work: a long statement would hold up the loop."""
        lock = self._write_lock()
        if lock is None:
            async with self.sessionmaker() as session, session.begin():
                yield session
            return
        timeout = self.busy_timeout if wait is None else wait
        async with lock.hold(timeout), self.sessionmaker() as session, session.begin():
            token = sqlite_driver.INLINE_WRITES.set(inline)
            try:
                yield session
            finally:
                sqlite_driver.INLINE_WRITES.reset(token)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session: one consistent snapshot, never waiting for writers.

        On SQLite it begins a deferred transaction outside the write queue, so it must not
        write (PostgreSQL refuses it; SQLite would drop it). The block ends by closing the
        session, which rolls the transaction back and detaches what it loaded, unexpired,
        for the caller to read."""
        token = sqlite_driver.INLINE_WRITES.set(False)  # a read may be long: never inline
        try:
            async with self.read_sessionmaker() as session:
                yield session
        finally:
            sqlite_driver.INLINE_WRITES.reset(token)

    async def dispose(self) -> None:
        await self.engine.dispose()
