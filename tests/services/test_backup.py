"""`helpdesk backup create | verify | restore | prune` without Temporal: a round trip that
reads every ticket and attachment back, no plaintext on disk, tamper detection, refusals,
and what crypto-shredding means for backups."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk.backup import BackupError
from helpdesk.backup.create import create_backup
from helpdesk.backup.restore import restore_backup, verify_backup
from helpdesk.backup.retention import list_backups, prune
from helpdesk.errors import Gone
from helpdesk.services.attachment_store import get_store
from models.attachment import Attachment
from models.enums import Role, TicketStatus
from models.keys import DataKey as DataKeyRow
from models.ticket import Ticket
from tests.conftest import make_settings
from tests.support.backup import (
    add_attachment,
    open_runtime,
    read_attachment,
    read_title,
    second_site,
)
from tests.support.factories import make_user
from tests.support.ticket_rows import make_ticket

ROOT = Path(__file__).resolve().parents[2]
CANARY = "CANARY-7f3e-backup-plaintext"


async def _world(runtime, n: int = 4):
    requester = await make_user(runtime, Role.END_USER)
    made = []
    for i, status in enumerate(list(TicketStatus)[:n]):
        ticket = await make_ticket(
            runtime, requester_id=requester.id, title=f"{CANARY} ticket {i}", status=status
        )
        attachment = await add_attachment(
            runtime, ticket, requester.id, f"{CANARY} attachment {i}\n".encode() * 5000
        )
        made.append((ticket, attachment))
    return requester, made


async def test_round_trip_reads_every_ticket_and_attachment_back(runtime, settings, tmp_path):
    _, made = await _world(runtime)
    created = await create_backup(settings, out_dir=tmp_path / "backups")
    manifest = created.manifest
    assert manifest["counts"]["tickets"] == 4
    assert manifest["attachments"]["objects"] == 4 and manifest["attachments"]["missing"] == []
    assert manifest["database"]["engine"] == "sqlite"
    assert manifest["schema_revision"]
    assert sorted(p.name for p in created.path.iterdir()) == [
        "attachments.enc",
        "database.enc",
        "manifest.enc",
    ]
    assert verify_backup(settings, created.path).manifest == manifest

    target = second_site(settings, tmp_path)
    await restore_backup(target, created.path)
    restored = open_runtime(target)
    try:
        for ticket, attachment in made:
            assert await read_title(restored, ticket.id) == await read_title(runtime, ticket.id)
            assert await read_attachment(restored, attachment) == await read_attachment(
                runtime, attachment
            )
        async with restored.database.transaction() as session:
            assert (await restored.audit.verify(session)).ok
    finally:
        await restored.close()


async def test_no_plaintext_byte_reaches_the_disk(runtime, settings, tmp_path):
    await _world(runtime, 2)
    before = {p for p in tmp_path.rglob("*")}
    created = await create_backup(settings, out_dir=tmp_path / "backups")
    # Nothing but the backup's own files appeared anywhere (no temporary snapshot file).
    new = {p for p in tmp_path.rglob("*")} - before
    assert new == {tmp_path / "backups", created.path, *created.path.iterdir()}
    for part in created.path.iterdir():
        raw = part.read_bytes()
        assert oct(part.stat().st_mode & 0o777) == "0o600"
        assert b"SQLite format 3" not in raw  # the database image is sealed
        assert b"ustar" not in raw  # so is the attachment tar stream
        assert b"alembic_version" not in raw and CANARY.encode() not in raw


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "manifest"])
async def test_any_tampering_is_reported_by_verify_and_refused_by_restore(
    runtime, settings, tmp_path, damage
):
    requester, made = await _world(runtime, 2)
    # Over one 1 MiB segment, so that a cut at a segment boundary is possible.
    await add_attachment(runtime, made[0][0], requester.id, os.urandom(3 * 1024 * 1024))
    first = await create_backup(settings, out_dir=tmp_path / "b1")
    second = await create_backup(settings, out_dir=tmp_path / "b2")
    path = first.path
    if damage == "flip":
        part = path / "database.enc"
        raw = bytearray(part.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        part.write_bytes(bytes(raw))
    elif damage == "truncate":  # cut at a segment boundary: only the final flag tells
        part = path / "attachments.enc"
        sealed = part.read_bytes()
        boundary = 25 + 2 * (12 + 1024 * 1024 + 16)  # header, then two whole segments
        assert len(sealed) > boundary
        part.write_bytes(sealed[:boundary])
    elif damage == "swap":  # a part of another backup, sealed under the same key
        (path / "attachments.enc").write_bytes((second.path / "attachments.enc").read_bytes())
    else:
        raw = bytearray((path / "manifest.enc").read_bytes())
        raw[-1] ^= 0x80
        (path / "manifest.enc").write_bytes(bytes(raw))
    with pytest.raises(BackupError):
        verify_backup(settings, path)
    target = second_site(settings, tmp_path)
    with pytest.raises(BackupError):
        await restore_backup(target, path)
    # Nothing was left in the target: it is still empty, and the intact backup restores.
    assert not (target.var_dir / "helpdesk.db").exists()
    assert list(target.var_dir.rglob("*.restoring-*")) == []
    assert get_store(open_runtime(target)).files() == []  # type: ignore[attr-defined]
    await restore_backup(target, second.path)


async def test_a_wrong_key_is_named_as_such(runtime, settings, tmp_path):
    await _world(runtime, 1)
    created = await create_backup(settings, out_dir=tmp_path / "b")
    other = make_settings(
        settings.var_dir, database_url=settings.database_url, backup_key=_b64(b"k" * 32)
    )
    with pytest.raises(BackupError, match="another backup key"):
        verify_backup(other, created.path)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


async def test_restore_refuses_a_target_that_is_not_empty(runtime, settings, tmp_path):
    await _world(runtime, 1)
    created = await create_backup(settings, out_dir=tmp_path / "b")
    with pytest.raises(BackupError, match="not empty"):
        await restore_backup(settings, created.path)  # the live site itself
    target = second_site(settings, tmp_path)
    stray = target.attachments_path / "tickets" / "x"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left over")
    with pytest.raises(BackupError, match="attachment store"):
        await restore_backup(target, created.path)
    assert not (target.var_dir / "helpdesk.db").exists()


async def test_crypto_shredding_reaches_backups_only_when_they_expire(runtime, settings, tmp_path):
    """A backup made before a ticket's deletion holds its data key: restoring it reads the
    ticket again. A backup made after holds neither key nor text. The old backup stops
    being readable when retention prunes it (or the KEK that wraps its keys is destroyed)."""
    requester = await make_user(runtime, Role.END_USER)
    ticket = await make_ticket(runtime, requester_id=requester.id, title=f"{CANARY} shred me")
    attachment = await add_attachment(runtime, ticket, requester.id, b"scan of a lab result")
    before = await create_backup(settings, out_dir=tmp_path / "backups")

    # Deletion as `ticket_commands.dispose` does it: the data key destroyed, text dropped, the
    # attachment objects removed.
    async with runtime.database.transaction() as session:
        row = await session.get(Ticket, ticket.id)
        assert row is not None
        key_id = row.data_key_id
        row.deleted_at = datetime.now(UTC)
        row.title_enc = row.description_enc = row.data_key_id = None
        await session.flush()
        await runtime.keys.destroy(session, key_id)
    await get_store(runtime).delete(attachment.storage_key or "")
    with pytest.raises(Gone):
        await read_title(runtime, ticket.id)
    after = await create_backup(settings, out_dir=tmp_path / "backups")
    assert after.manifest["attachments"]["objects"] == 0

    old_site = second_site(settings, tmp_path / "old")
    await restore_backup(old_site, before.path)
    restored = open_runtime(old_site)
    try:  # the pre-deletion backup brings the ticket back, text and attachment
        assert await read_title(restored, ticket.id) == f"{CANARY} shred me"
        assert await read_attachment(restored, attachment) == b"scan of a lab result"
    finally:
        await restored.close()

    new_site = second_site(settings, tmp_path / "new")
    await restore_backup(new_site, after.path)
    restored = open_runtime(new_site)
    try:  # the post-deletion backup has no key, no text, no object
        async with restored.database.transaction() as session:
            assert await session.get(DataKeyRow, key_id) is None
            assert await session.scalar(
                select(func.count()).select_from(Attachment).where(Attachment.id == attachment.id)
            )
        with pytest.raises(Gone):
            await read_title(restored, ticket.id)
        assert not await get_store(restored).exists(attachment.storage_key or "")
    finally:
        await restored.close()

    # Retention: once the pre-deletion backup is older than the retention, prune removes it;
    # from then on no copy of the ticket's key exists.
    later = datetime.now(UTC) + timedelta(days=settings.backup_retention_days, seconds=5)
    removed = prune(tmp_path / "backups", settings.backup_retention_days, now=later)
    assert before.path in removed and not before.path.exists()
    assert prune(tmp_path / "backups", settings.backup_retention_days) == []
    assert list_backups(tmp_path / "backups") == ([] if after.path in removed else [after.path])


async def test_an_object_deleted_after_the_snapshot_is_listed_missing(runtime, settings, tmp_path):
    _requester, made = await _world(runtime, 1)
    _ticket, attachment = made[0]
    store = get_store(runtime)
    real_read = store.read_raw

    async def gone_meanwhile(key: str) -> bytes:
        await store.delete(key)  # the ticket was deleted between snapshot and copy
        return await real_read(key)

    store.read_raw = gone_meanwhile  # type: ignore[method-assign,assignment]
    created = await create_backup(settings, out_dir=tmp_path / "b", store=store)
    assert created.manifest["attachments"]["missing"] == [attachment.storage_key]
    verify_backup(settings, created.path)


def test_settings_keep_the_backup_key_apart(tmp_path):
    from pydantic import ValidationError

    kek = _b64(b"K" * 32)
    with pytest.raises(ValidationError, match="BACKUP_KEY must differ"):
        make_settings(tmp_path, kek=kek, backup_key=kek)
    with pytest.raises(ValidationError, match="base64 of 32 bytes"):
        make_settings(tmp_path, backup_key=_b64(b"short"))
    production = make_settings(
        tmp_path,
        environment="production",
        email_backend="smtp",
        jwt_secret="j" * 40,
        kek=kek,
        blind_index_key="b" * 40,
        audit_key="a" * 40,
        payload_codec_key=_b64(b"P" * 32),
        command_key="m" * 40,
    )
    assert production.backup_key is None  # API and worker do not need it ...
    from helpdesk.backup.keys import backup_key

    with pytest.raises(BackupError, match="HELPDESK_BACKUP_KEY is not set"):
        backup_key(production)  # ... the backup commands refuse to run without it


async def test_cli_create_verify_restore(runtime, settings, tmp_path):
    _, _made = await _world(runtime, 2)
    env = {
        **os.environ,
        "HELPDESK_ENVIRONMENT": "test",
        "HELPDESK_VAR_DIR": str(settings.var_dir),
        "HELPDESK_DATABASE_URL": settings.database_url,
    }

    def helpdesk(*args: str, env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from helpdesk.cli import main; main()", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    made_backup = helpdesk("backup", "create")
    assert made_backup.returncode == 0, made_backup.stderr
    path = Path(made_backup.stdout.strip().splitlines()[-1])
    assert path.parent == settings.var_dir / "backups"
    # One summary line in the log, no progress bar (not a terminal).
    summary = [line for line in made_backup.stderr.splitlines() if "backup create:" in line]
    assert len(summary) == 1 and "2 tickets" in summary[0]
    checked = helpdesk("backup", "verify", str(path))
    assert checked.returncode == 0 and "backup intact: 2 tickets" in checked.stdout
    refused = helpdesk("backup", "restore", str(path))
    assert refused.returncode == 1 and "not empty" in refused.stderr

    target = second_site(settings, tmp_path)
    target_env = {
        **env,
        "HELPDESK_VAR_DIR": str(target.var_dir),
        "HELPDESK_DATABASE_URL": target.database_url,
    }
    restored = helpdesk("backup", "restore", str(path), env=target_env)
    assert restored.returncode == 0, restored.stderr
    audit = helpdesk("audit", "verify", env=target_env)
    assert audit.returncode == 0 and "audit chain intact" in audit.stdout


async def test_postgres_backup_restores_into_an_empty_database(pg_url, tmp_path):
    import asyncpg

    var = tmp_path / "var"
    var.mkdir()
    source = make_settings(var, database_url=pg_url)
    runtime = open_runtime(source)
    try:
        requester = await make_user(runtime, Role.END_USER)
        ticket = await make_ticket(runtime, requester_id=requester.id, title="PG ticket")
        attachment = await add_attachment(runtime, ticket, requester.id, b"pg attachment")
        created = await create_backup(source, out_dir=tmp_path / "b")
        assert created.manifest["database"]["engine"] == "postgresql"
        verify_backup(source, created.path)
    finally:
        await runtime.close()

    name = f"helpdesk_r_{os.urandom(5).hex()}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        target = second_site(
            source, tmp_path, database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        )
        await restore_backup(target, created.path)
        with pytest.raises(BackupError, match="tables"):
            await restore_backup(target, created.path)
        restored = open_runtime(target)
        try:
            assert await read_title(restored, ticket.id) == "PG ticket"
            assert await read_attachment(restored, attachment) == b"pg attachment"
            async with restored.database.transaction() as session:
                assert (await restored.audit.verify(session)).ok
        finally:
            await restored.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_destroying_a_rotated_kek_makes_older_backups_unreadable(runtime, settings, tmp_path):
    """The other way crypto-shredding reaches backups: rotate the KEK, re-wrap every data
    key under the new one, destroy the old one. Backups made before hold keys wrapped by the
    destroyed KEK only: restored, they read nothing. Backups made after read as usual."""
    import base64

    from helpdesk.crypto import IntegrityError

    requester = await make_user(runtime, Role.END_USER)
    ticket = await make_ticket(runtime, requester_id=requester.id, title="before rotation")
    old_backup = await create_backup(settings, out_dir=tmp_path / "backups")

    old_kek = base64.b64encode(settings.secret_bytes("kek")).decode()
    new_kek = _b64(os.urandom(32))
    rotating = make_settings(
        settings.var_dir,
        database_url=settings.database_url,
        kek=new_kek,
        kek_id="kek-2",
        previous_keks=f"kek-1:{old_kek}",
    )
    live = open_runtime(rotating)
    try:
        async with live.database.transaction() as session:
            assert await live.keys.rewrap_all(session) >= 1
    finally:
        await live.close()
    new_backup = await create_backup(settings, out_dir=tmp_path / "backups")

    # The old KEK is destroyed: only kek-2 exists from now on.
    old_site = second_site(settings, tmp_path / "old", kek=new_kek, kek_id="kek-2")
    await restore_backup(old_site, old_backup.path)
    restored = open_runtime(old_site)
    try:
        with pytest.raises(IntegrityError, match="unknown key-encryption key"):
            await read_title(restored, ticket.id)
    finally:
        await restored.close()

    new_site = second_site(settings, tmp_path / "new", kek=new_kek, kek_id="kek-2")
    await restore_backup(new_site, new_backup.path)
    restored = open_runtime(new_site)
    try:
        assert await read_title(restored, ticket.id) == "before rotation"
    finally:
        await restored.close()


async def test_a_backup_taken_while_tickets_are_written_is_consistent(runtime, settings, tmp_path):
    """Online: tickets keep being written during the backup; the backup is one snapshot
    (its counts match its rows, the audit chain is whole, every object it lists is in it)."""
    import asyncio

    requester, _ = await _world(runtime, 1)
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            ticket = await make_ticket(runtime, requester_id=requester.id, title="busy")
            await add_attachment(runtime, ticket, requester.id, b"x" * 70_000)
            written += 1

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.3)
    created = await create_backup(settings, out_dir=tmp_path / "b")
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert written > 2
    manifest = created.manifest
    assert manifest["attachments"]["objects"] == manifest["counts"]["attachments"]
    target = second_site(settings, tmp_path)
    await restore_backup(target, created.path)
    restored = open_runtime(target)
    try:
        async with restored.database.transaction() as session:
            tickets_count = await session.scalar(select(func.count()).select_from(Ticket))
            assert (await restored.audit.verify(session)).ok
        assert tickets_count == manifest["counts"]["tickets"] <= 1 + written
    finally:
        await restored.close()
