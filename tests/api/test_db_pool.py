"""PostgreSQL's pool: a connection idle past PING_AFTER_IDLE_SECONDS is pinged before use
and replaced when dead; one that dies while trusted costs one 503, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

from api.app import create_app, prepare_runtime
from helpdesk import db as db_module
from helpdesk.runtime import Runtime, build_runtime
from models.enums import Role
from tests.conftest import make_settings
from tests.support.factories import make_user

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture
async def pg_runtime(pg_url: str, var_dir: Path) -> AsyncIterator[Runtime]:
    rt = prepare_runtime(build_runtime(make_settings(var_dir, database_url=pg_url)))
    try:
        yield rt
    finally:
        await rt.close()


async def _backend_pid(runtime: Runtime) -> int:
    async with runtime.database.read() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(pid: int) -> None:
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_an_idle_connection_that_died_is_replaced_before_use(
    pg_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout is "idle"
    first = await _backend_pid(pg_runtime)
    await _terminate(first)
    # The ping finds the pooled connection dead; the read runs on a fresh one.
    second = await _backend_pid(pg_runtime)
    assert second != first
    assert await _backend_pid(pg_runtime) == second  # and the pool keeps that one


async def test_a_recently_used_connection_is_not_pinged(
    pg_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    pid = await _backend_pid(pg_runtime)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    from sqlalchemy import event

    event.listen(pg_runtime.database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await _backend_pid(pg_runtime) == pid
    finally:
        event.remove(pg_runtime.database.engine.sync_engine, "before_cursor_execute", seen)
    assert statements == ["SELECT pg_backend_pid()"]


async def test_a_connection_that_died_while_trusted_costs_one_503_then_recovers(
    pg_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    agent = await make_user(pg_runtime, Role.SUPPORT_AGENT)
    app = create_app(runtime=pg_runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/v1/categories", headers=agent.headers)).status_code == 200
        await _terminate(await _backend_pid(pg_runtime))
        lost = await client.get("/api/v1/categories", headers=agent.headers)
        assert lost.status_code == 503, lost.text
        assert lost.headers["retry-after"]
        assert lost.json()["error"]["code"] == "unavailable"
        again = await client.get("/api/v1/categories", headers=agent.headers)
        assert again.status_code == 200, again.text
