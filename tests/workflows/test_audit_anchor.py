"""The audit chain's head is anchored outside the database (issue 11): `helpdesk audit
verify` notices rows cut off the end (triggers dropped first, as anyone holding the file
can), a forged or missing anchor, and says how old the latest anchor is; a Temporal schedule
created when the worker starts appends anchors on its own."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpdesk.audit_anchor import (
    Anchor,
    FileAnchorStore,
    anchor_now,
    anchor_store,
    is_authentic,
    seal,
    verify_against_anchor,
)
from helpdesk.runtime import Runtime
from tests.support.cli import audit_rows, helpdesk

TRUNCATED = re.compile(
    r"audit chain truncated: anchor at row (\d+) with head ([0-9a-f]{64}), the chain has (\d+) rows"
)


def anchor_lines(var_dir: Path) -> list[dict[str, object]]:
    path = var_dir / "audit-anchors.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def cut_rows(var_dir: Path, keep: int) -> None:
    with sqlite3.connect(var_dir / "helpdesk.db") as db:
        with pytest.raises(sqlite3.DatabaseError):
            db.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))


# --- the command, as an operator runs it -----------------------------------------------


def test_intact_chain_passes_and_says_how_old_its_anchor_is(
    deployment: Path,
) -> None:
    rows = len(audit_rows(deployment))
    anchored = helpdesk(deployment, "audit", "anchor")
    assert anchored.returncode == 0, anchored.stderr
    assert f"anchored at row {rows}" in anchored.stdout
    (line,) = anchor_lines(deployment)
    assert line["rows"] == rows
    assert (deployment / "audit-anchors.log").stat().st_mode & 0o777 == 0o600

    result = helpdesk(deployment, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(
        rf"audit chain intact \({rows} rows\); latest anchor: row {rows}, \d+ s old",
        result.stdout.strip(),
    ), result.stdout
    # Rows written after the anchor are fine: the anchor only says where the chain was.
    created = helpdesk(
        deployment,
        "create-admin",
        "--email",
        "late@example.test",
        "--password-stdin",
        stdin="a long admin passphrase 7\n",
    )
    assert created.returncode == 0, created.stderr
    later = helpdesk(deployment, "audit", "verify")
    assert later.returncode == 0 and f"latest anchor: row {rows}," in later.stdout


def test_rows_cut_off_the_end_make_the_command_fail(deployment: Path) -> None:
    rows = len(audit_rows(deployment))
    assert helpdesk(deployment, "audit", "anchor").returncode == 0
    head = anchor_lines(deployment)[-1]["head"]
    cut_rows(deployment, rows - 1)
    plain = helpdesk(deployment, "audit", "verify")
    assert plain.returncode == 1, plain.stdout
    match = TRUNCATED.search(plain.stdout)
    assert match, plain.stdout
    assert match.groups() == (str(rows), head, str(rows - 1))
    assert "intact" not in plain.stdout


@pytest.mark.parametrize("cut", [1, 3, "all"])
async def test_rows_cut_off_the_end_are_reported(runtime: Runtime, cut: int | str) -> None:
    """Delete the last row, the last three, or every row, with the triggers dropped."""
    from sqlalchemy import text

    for i in range(6):
        async with runtime.database.transaction() as session:
            await runtime.audit.record(session, "test.event", details={"i": i})
    key = runtime.settings.secret_bytes("audit_key")
    store = anchor_store(runtime.settings)
    async with runtime.database.read() as session:
        anchor = await anchor_now(runtime.audit, key, session, store)
    assert anchor.rows == 6
    keep = 0 if cut == "all" else 6 - int(cut)
    async with runtime.database.transaction() as session:
        await session.execute(text("DROP TRIGGER audit_log_no_delete"))
        await session.execute(text("DELETE FROM audit_log WHERE seq > :k"), {"k": keep})
    async with runtime.database.read() as session:
        assert (await runtime.audit.verify(session)).ok  # the bare chain cannot tell
        report = await verify_against_anchor(
            runtime.audit, key, session, store, max_age=timedelta(hours=1)
        )
    assert not report.ok
    assert report.message == (
        f"audit chain truncated: anchor at row 6 with head {anchor.head}, the chain has {keep} rows"
    )


def test_no_anchor_or_a_forged_one_fails(deployment: Path) -> None:
    missing = helpdesk(deployment, "audit", "verify")
    assert missing.returncode == 1
    assert "no audit anchor" in missing.stdout

    rows = len(audit_rows(deployment))
    assert helpdesk(deployment, "audit", "anchor").returncode == 0
    cut_rows(deployment, rows - 2)
    # The truncator appends an anchor of the shorter chain, without the audit key.
    with sqlite3.connect(deployment / "helpdesk.db") as db:
        [short_head] = db.execute("SELECT hash FROM audit_log ORDER BY seq DESC").fetchone()
    forged = Anchor(rows - 2, short_head, datetime.now(UTC), "0" * 64)
    with (deployment / "audit-anchors.log").open("a") as handle:
        handle.write(forged.to_json() + "\n")
    result = helpdesk(deployment, "audit", "verify")
    assert result.returncode == 1
    assert "forged" in result.stdout


def test_an_old_anchor_is_a_warning(deployment: Path) -> None:
    assert helpdesk(deployment, "audit", "anchor").returncode == 0
    result = helpdesk(deployment, "audit", "verify", HELPDESK_AUDIT_ANCHOR_MAX_AGE_MINUTES="0.0001")
    assert result.returncode == 0
    assert "WARNING: the latest anchor is older than" in result.stdout


# --- the pieces ------------------------------------------------------------------------------


async def test_the_file_store_only_appends(tmp_path: Path) -> None:
    store = FileAnchorStore(tmp_path / "anchors.log")
    assert await store.latest() is None
    key = b"k" * 32
    first = seal(key, 3, "a" * 64, datetime(2026, 1, 1, tzinfo=UTC))
    second = seal(key, 5, "b" * 64, datetime(2026, 1, 2, tzinfo=UTC))
    await store.append(first)
    await store.append(second)
    assert await store.latest() == second
    assert [Anchor.from_json(x) for x in store.path.read_text().splitlines()] == [first, second]
    assert is_authentic(key, second)
    assert not is_authentic(b"x" * 32, second)
    moved = Anchor(second.rows, second.head, second.at + timedelta(days=1), second.mac)
    assert not is_authentic(key, moved)  # the time is sealed too


async def test_a_rewritten_chain_does_not_match_its_anchor(runtime: Runtime) -> None:
    from sqlalchemy import text

    for i in range(3):
        async with runtime.database.transaction() as session:
            await runtime.audit.record(session, "test.event", details={"i": i})
    key = runtime.settings.secret_bytes("audit_key")
    store = anchor_store(runtime.settings)
    async with runtime.database.read() as session:
        head = await session.scalar(text("SELECT hash FROM audit_log WHERE seq = 3"))
    await store.append(seal(key, 3, "f" * 64, datetime.now(UTC)))
    async with runtime.database.read() as session:
        report = await verify_against_anchor(
            runtime.audit, key, session, store, max_age=timedelta(hours=1)
        )
    assert not report.ok and "rewritten" in report.message and head not in report.message


# --- the schedule ------------------------------------------------------------------------------


@pytest.mark.temporal
@pytest.mark.parametrize("settings", [{"audit_anchor_interval_minutes": 0.05}], indirect=True)
async def test_the_worker_creates_the_schedule_and_anchors_arrive(runtime, temporal_client):
    from temporalio.client import ScheduleIntervalSpec

    from helpdesk.rules.activity_contracts import AnchorRecord
    from workers.audit_schedule import anchor_schedule_id, ensure_anchor_schedule
    from workers.worker import run_worker_in_background

    async with runtime.database.transaction() as session:
        await runtime.audit.record(session, "test.event")
    runtime.temporal = temporal_client
    store = FileAnchorStore(runtime.settings.audit_anchor_path)
    async with run_worker_in_background(runtime):
        handle = temporal_client.get_schedule_handle(anchor_schedule_id(runtime.settings))
        described = await handle.describe()
        (interval,) = described.schedule.spec.intervals
        assert interval.every == timedelta(seconds=3)
        # Created with an immediate run, then every 3 s: two anchors arrive on their own.
        for _ in range(200):
            if store.path.exists() and len(store.path.read_text().splitlines()) >= 2:
                break
            await asyncio.sleep(0.1)
        lines = [Anchor.from_json(x) for x in store.path.read_text().splitlines()]
        # Each anchor seals the chain as it stood: our row, then any the worker's own
        # schedules add (the daily self-check audits its run).
        rows = [a.rows for a in lines]
        assert len(rows) >= 2 and rows[0] >= 1 and rows == sorted(rows), rows
        # The anchor is in the workflow's Temporal history too (its result).
        recent = (await handle.describe()).info.recent_actions
        assert recent
        action = recent[0].action
        run = temporal_client.get_workflow_handle(
            action.workflow_id, run_id=action.first_execution_run_id, result_type=AnchorRecord
        )
        record = await run.result()
        assert (record.rows, record.mac) in {(a.rows, a.mac) for a in lines}
        # Idempotent: a second start updates the existing schedule instead of failing.
        changed = runtime.settings.model_copy(update={"audit_anchor_interval_minutes": 30})
        await ensure_anchor_schedule(temporal_client, changed)
        (interval,) = (await handle.describe()).schedule.spec.intervals
        assert interval == ScheduleIntervalSpec(every=timedelta(minutes=30))
        await handle.delete()
    async with runtime.database.read() as session:
        report = await verify_against_anchor(
            runtime.audit,
            runtime.settings.secret_bytes("audit_key"),
            session,
            store,
            max_age=timedelta(minutes=1),
        )
    assert report.ok and not report.stale, report.message
