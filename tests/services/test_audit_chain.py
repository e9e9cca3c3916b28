"""The audit log is append-only and hash-chained; tampering is reported with the row."""

import asyncio

import pytest
from sqlalchemy import text

from helpdesk.context import RequestContext, set_context
from helpdesk.runtime import build_runtime
from tests.conftest import make_settings


async def _append(runtime, n, action="test.event"):
    for i in range(n):
        async with runtime.database.transaction() as session:
            await runtime.audit.record(
                session, action, table="users", record_id=str(i), details={"i": i}
            )


async def test_rows_carry_context_and_chain_verifies(runtime):
    set_context(RequestContext(request_id="rid-1", ip="192.0.2.4", user_agent="ua/1"))
    await _append(runtime, 5)
    async with runtime.database.transaction() as session:
        rows = (
            await session.execute(
                text("SELECT seq, ip, user_agent, request_id, outcome FROM audit_log ORDER BY seq")
            )
        ).all()
        report = await runtime.audit.verify(session)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert {(r.ip, r.user_agent, r.request_id, r.outcome) for r in rows} == {
        ("192.0.2.4", "ua/1", "rid-1", "success")
    }
    assert report.ok and report.rows_checked == 5


async def test_database_refuses_update_and_delete(runtime):
    await _append(runtime, 1)
    for statement in ("UPDATE audit_log SET action='x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with runtime.database.transaction() as session:
                await session.execute(text(statement))


async def test_altered_row_is_reported(runtime):
    await _append(runtime, 6)
    async with runtime.database.transaction() as session:
        await session.execute(text("DROP TRIGGER audit_log_no_update"))
        await session.execute(text("UPDATE audit_log SET record_id='999' WHERE seq=4"))
    async with runtime.database.transaction() as session:
        report = await runtime.audit.verify(session)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "altered" in report.problem


async def test_deleted_row_is_reported(runtime):
    await _append(runtime, 6)
    async with runtime.database.transaction() as session:
        await session.execute(text("DROP TRIGGER audit_log_no_delete"))
        await session.execute(text("DELETE FROM audit_log WHERE seq=3"))
    async with runtime.database.transaction() as session:
        report = await runtime.audit.verify(session)
    assert not report.ok and report.first_bad_seq == 4
    assert "missing" in report.problem


async def test_a_different_key_does_not_verify(runtime, settings):
    await _append(runtime, 2)
    other = build_runtime(settings.model_copy(update={"audit_key": settings.jwt_secret}))
    try:
        async with other.database.transaction() as session:
            report = await other.audit.verify(session)
        assert not report.ok and report.first_bad_seq == 1
    finally:
        await other.close()


async def test_concurrent_appends_keep_one_chain_sqlite(runtime):
    await asyncio.gather(*(_append(runtime, 5, f"c{i}") for i in range(8)))
    async with runtime.database.transaction() as session:
        report = await runtime.audit.verify(session)
    assert report.ok and report.rows_checked == 40


@pytest.mark.postgres
async def test_concurrent_appends_keep_one_chain_postgres(pg_url, var_dir):
    from api.app import prepare_runtime

    rt = prepare_runtime(build_runtime(make_settings(var_dir, database_url=pg_url)))
    try:
        await asyncio.gather(*(_append(rt, 5, f"c{i}") for i in range(8)))
        async with rt.database.transaction() as session:
            report = await rt.audit.verify(session)
        assert report.ok and report.rows_checked == 40
        with pytest.raises(Exception, match="append-only"):
            async with rt.database.transaction() as session:
                await session.execute(text("DELETE FROM audit_log"))
    finally:
        await rt.close()


async def test_checkpoint_detects_rows_cut_from_the_end(runtime):
    await _append(runtime, 5)
    async with runtime.database.transaction() as session:
        cp = await runtime.audit.checkpoint(session)
    assert cp.seq == 5
    async with runtime.database.transaction() as session:
        await session.execute(text("DROP TRIGGER audit_log_no_delete"))
        await session.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    async with runtime.database.transaction() as session:
        plain = await runtime.audit.verify(session)
        with_cp = await runtime.audit.verify(session, [cp])
    assert plain.ok  # a prefix of a chain is a valid chain...
    assert not with_cp.ok and with_cp.first_bad_seq == 5  # ...but not the one we sealed
    forged = type(cp)(cp.seq, cp.head, "0" * 64)
    async with runtime.database.transaction() as session:
        assert (await runtime.audit.verify(session, [forged])).problem == "checkpoint forged"
