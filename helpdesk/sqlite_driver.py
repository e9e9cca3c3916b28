"""A leaner aiosqlite for SQLAlchemy's ``sqlite+aiosqlite`` dialect: one thread hop per
statement instead of four.

aiosqlite runs every call of the sqlite3 module on a connection's own thread and hands the
result back to the event loop, one hop per call. SQLAlchemy's adapter makes four calls per
statement (open a cursor, execute, fetch all rows, close the cursor), and every hop costs the
event loop a wake-up, a future and two GIL hand-overs: about 0.2 ms of the loop's time on
this machine, most of a small statement's cost (profiled: a primary-key read took 0.85 ms).

Here a cursor is a plain object on the loop's side: `Cursor.execute` runs the statement AND
collects its rows, description, rowcount and lastrowid in ONE hop, and fetching and closing
need no hop at all. A transaction's ``BEGIN`` travels with its first statement, and ending
a transaction that is not open (the pool's reset after the session ended it) costs no hop:
a read snapshot with one query is two hops (was seven), a write transaction one per
statement plus its COMMIT. Results are prefetched whole, which is what SQLAlchemy's adapter does
with aiosqlite anyway (it calls ``fetchall`` straight after ``execute``). SQLite still works
on the connection's own thread, so a long query never blocks the event loop.

The module offers the part of aiosqlite's interface the dialect uses (``connect``, the
connection's ``cursor``/``commit``/``rollback``/``close``/``create_function``/``stop``,
``isolation_level`` through its ``_tx`` queue and ``_conn``, the cursor's ``execute``/
``executemany``/``fetch*``/``close``), and sqlite3's exceptions. `dbapi()` is what
`helpdesk.db.create_engine` passes as the engine's ``module``.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

__version__ = "1.0"

# The DB-API error classes, as aiosqlite re-exports them.
DatabaseError = sqlite3.DatabaseError
Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info

_STOP = object()
# Set (by `helpdesk.db.Database.transaction(inline=True)`) in the task that holds this
# process's SQLite writer lock for a short write transaction: once its BEGIN has gone out,
# its statements run on the event loop's thread (see `Cursor._hop`).
INLINE_WRITES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "helpdesk_sqlite_inline_writes", default=False
)
# Transaction starts that may wait for the first statement (helpdesk.db emits these).
_BEGINS = frozenset({"BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED", "BEGIN EXCLUSIVE"})
# The starts of a read snapshot (`helpdesk.db.Database.read`): it never writes.
_READ_BEGINS = frozenset({"BEGIN", "BEGIN DEFERRED"})


def _deliver(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the awaiting task was cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Worker(threading.Thread):
    """The one thread that touches a sqlite3 connection; runs (future, function) items.

    Once stopped it takes no more work, and work queued behind the stop fails with
    "connection closed" instead of waiting for ever: a statement, rollback or close racing
    SQLAlchemy's terminate (`Connection.stop`) must not leave its awaiting task (and the
    writer lock that task holds, `helpdesk.db.WriterLock`) hanging."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(name="helpdesk-sqlite", daemon=True)
        self._connector = connector
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._gate = threading.Lock()
        self.stopped = False
        # Items queued and not yet finished. Written under the gate or by this thread after
        # an item ran; read from the event loop (an int read is atomic).
        self.pending = 0
        self.conn: sqlite3.Connection | None = None

    def submit(self, item: tuple[Any, Callable[[], Any]]) -> None:
        """Queue work, or fail its future at once when the worker is stopped."""
        with self._gate:
            if not self.stopped:
                self.pending += 1
                self._queue.put(item)
                return
        _hand_over(item[0], False, ValueError("connection closed"))

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        # SQLAlchemy's adapter queues its isolation-level change straight into ``_tx``.
        self.submit(item)

    def stop_soon(self) -> None:
        """Run what is queued, then end; nothing queued after this runs."""
        with self._gate:
            if not self.stopped:
                self.stopped = True
                self._queue.put(_STOP)

    def run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            future, function = item
            try:
                value, ok = function(), True
            except BaseException as exc:  # handed to the awaiting coroutine
                value, ok = exc, False
            with self._gate:
                self.pending -= 1
            _hand_over(future, ok, value)
        while True:  # nothing arrives after _STOP (see submit); fail any stragglers
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                _hand_over(item[0], False, ValueError("connection closed"))


def _hand_over(future: Any, ok: bool, value: Any) -> None:
    """Deliver a result to its future on the future's loop (from any thread)."""
    loop = future.get_loop()
    if loop.is_closed():
        return
    try:
        loop.call_soon_threadsafe(_deliver, future, ok, value)
    except RuntimeError:  # the loop closed between the check and the call
        return


class Cursor:
    """A cursor whose `execute` fetches everything in the same hop."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self._position = 0
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _take(self, cursor: sqlite3.Cursor) -> Cursor:
        self.description = cursor.description
        self._rows = cursor.fetchall() if cursor.description else []
        self._position = 0
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        cursor.close()
        return self

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        connection = self._connection
        if sql in _BEGINS and parameters in (None, (), []) and not connection._pending_begin:
            # Sent with the transaction's first statement, in the same hop.
            connection._pending_begin = sql
            self.description, self._rows, self.rowcount = None, [], -1
            return self
        return await self._hop(
            lambda cursor: cursor.execute(sql, () if parameters is None else parameters)
        )

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        return await self._hop(lambda cursor: cursor.executemany(sql, seq_of_parameters))

    async def _hop(self, statement: Callable[[sqlite3.Cursor], Any]) -> Cursor:
        """Run `statement` on a fresh cursor in one hop, after the pending BEGIN if any,
        and take its rows, description, rowcount and lastrowid."""
        connection = self._connection
        begin, connection._pending_begin = connection._pending_begin, None
        if begin:
            connection._reading = begin in _READ_BEGINS

        def run() -> Cursor:
            conn = connection._require()
            if begin:
                conn.execute(begin)
            cursor = conn.cursor()
            try:
                statement(cursor)
                return self._take(cursor)
            except BaseException:
                cursor.close()
                raise

        if not begin and INLINE_WRITES.get() and connection._inline_ready():
            return run()
        return await connection._run(run)

    async def fetchone(self) -> Any:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        rows = self._rows[self._position : self._position + size]
        self._position += len(rows)
        return rows

    async def fetchall(self) -> list[Any]:
        rows = self._rows[self._position :] if self._position else self._rows
        self._rows, self._position = [], 0
        return rows

    async def nextset(self) -> None:
        return None

    async def close(self) -> None:
        self._rows, self._position = [], 0


class Connection:
    """An aiosqlite-like connection: its sqlite3 connection lives on its own thread."""

    def __init__(self, database: Any, **kwargs: Any) -> None:
        kwargs["check_same_thread"] = False  # created on the worker thread, used only there
        self._worker = _Worker(lambda: sqlite3.connect(database, **kwargs))
        self._connection: sqlite3.Connection | None = None
        # A BEGIN not sent yet: it goes out with the transaction's first statement.
        self._pending_begin: str | None = None
        # The open transaction began as a read snapshot (plain or deferred BEGIN).
        self._reading = False

    # aiosqlite's names, used by SQLAlchemy's adapter (isolation_level, terminate).
    @property
    def _tx(self) -> _Worker:
        return self._worker

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._require()

    @property
    def _thread(self) -> threading.Thread:
        return self._worker

    def _require(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    async def _run(self, function: Callable[[], Any]) -> Any:
        if self._worker.stopped or not self._worker.is_alive():
            raise ValueError("connection closed")
        future = asyncio.get_running_loop().create_future()
        self._worker.submit((future, function))
        return await future

    async def _connect(self) -> Connection:
        self._worker.start()

        def connect() -> sqlite3.Connection:
            conn = self._worker._connector()
            self._worker.conn = conn
            return conn

        try:
            self._connection = await self._run(connect)
        except BaseException:
            self._worker.stop_soon()
            raise
        return self

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._connect().__await__()

    @property
    def isolation_level(self) -> str | None:
        return self._require().isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        return await Cursor(self).execute(sql, parameters)

    async def commit(self) -> None:
        if self._ends_without_hop():
            return
        await self._run(lambda: self._require().commit())

    async def rollback(self) -> None:
        if self._ends_without_hop():
            return
        if self._reading and not self._worker.pending:
            # The end of a read snapshot (every `Database.read` session ends so): SQLite
            # only lets go of its read mark, which never waits, so no hop.
            self._require().rollback()
            return
        await self._run(lambda: self._require().rollback())

    def _ends_without_hop(self) -> bool:
        """True when there is no transaction to end: its BEGIN never went out (no statement
        followed it), or none is open (the pool's reset after a session already ended
        it) and nothing is queued that could open one. Reading `in_transaction` from this
        thread is then safe: nothing runs on the connection's thread."""
        if self._pending_begin:
            self._pending_begin = None
            return True
        if self._worker.pending:
            # A statement is still queued or running (its awaiting task was cancelled, say
            # by a request's deadline): it may yet BEGIN. End the transaction after it, in
            # queue order, or the pool would take back a connection holding SQLite's lock.
            return False
        return not self._require().in_transaction

    def _inline_ready(self) -> bool:
        """True when a statement may run on the calling (event loop's) thread: nothing is
        queued or running on the connection's own thread, and a write transaction is open.
        SQLite then waits for no other writer (the transaction holds its write lock, and in
        WAL mode readers never block a writer), so the statement is as short as its own
        work; the BEGIN, which may wait for another process, and the COMMIT, which may run
        a checkpoint, still go through the thread."""
        if self._worker.pending or self._connection is None:
            return False
        return self._connection.in_transaction

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self._run(lambda: self._require().create_function(*args, **kwargs))

    async def close(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            await self._run(connection.close)
        finally:
            self._worker.stop_soon()

    def stop(self) -> None:
        """Terminate without waiting (SQLAlchemy's terminate): close on the thread, end it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._worker.submit((_Discard(), connection.close))
        self._worker.stop_soon()


class _Discard:
    """A stand-in future for work whose result nobody awaits (see Connection.stop)."""

    def done(self) -> bool:
        return True

    def get_loop(self) -> Any:
        return _ClosedLoop


class _ClosedLoop:
    @staticmethod
    def is_closed() -> bool:
        return True


def connect(database: Any, **kwargs: Any) -> Connection:
    """Like `aiosqlite.connect`: a connection to await (it opens on its own thread)."""
    kwargs.pop("loop", None)
    kwargs.pop("iter_chunk_size", None)
    return Connection(database, **kwargs)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DB-API module for ``create_async_engine(..., module=dbapi())``."""
    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)
