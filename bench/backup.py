"""Backup benchmark: `helpdesk backup create | verify | restore` of a SQLite site.

    python -m bench.backup [--tickets 100000] [--users 5000] [--attachments 1000]
                           [--attachment-bytes 65536]

The database is seeded as `bench.lists` seeds its tickets (bulk-loaded read-model rows:
sealed titles, search tokens, tags, users, categories), plus `--attachments` stored objects
of `--attachment-bytes` random bytes (the store holds ciphertext: random bytes are what it
looks like) with their rows. Then it times a backup, a verify and a restore into an empty
site, and prints the sizes; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.lists import _settings, load_sqlite, make_world
from helpdesk.backup.create import create_backup
from helpdesk.backup.restore import restore_backup, verify_backup
from helpdesk.migrate import upgrade
from helpdesk.runtime import build_runtime
from helpdesk.storage.store import storage_key_for


def _seed_attachments(db_path: Path, root: Path, count: int, size: int) -> None:
    """`count` stored objects and their rows, spread over the first tickets."""
    db = sqlite3.connect(db_path, isolation_level=None)
    tickets = db.execute(
        "SELECT id, requester_id FROM tickets ORDER BY number LIMIT ?", (count,)
    ).fetchall()
    db.execute("BEGIN")
    for i in range(count):
        ticket_hex, requester = tickets[i % len(tickets)]
        attachment = uuid.uuid4()
        key = storage_key_for(uuid.UUID(ticket_hex), attachment)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        db.execute(
            "INSERT INTO attachments (id, ticket_id, uploader_id, mime_type, size, sha256, "
            "storage_key, scan_status, is_internal, created_at, updated_at) VALUES "
            "(?, ?, ?, 'application/pdf', ?, ?, ?, 'CLEAN', 0, datetime('now'), datetime('now'))",
            (attachment.hex, ticket_hex, requester, size, "0" * 64, key),
        )
    db.execute("COMMIT")
    db.close()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(tickets: int, users: int, attachments: int, attachment_bytes: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="helpdesk-bench-backup-"))
    try:
        var = work / "var"
        var.mkdir()
        db_path = var / "helpdesk.db"
        url = f"sqlite+aiosqlite:///{db_path}"
        settings = _settings(var, url)
        await asyncio.to_thread(upgrade, url)
        runtime = build_runtime(settings)
        world = make_world(runtime, users)
        await runtime.close()
        started = time.perf_counter()
        load_sqlite(db_path, world, tickets)
        _seed_attachments(db_path, settings.attachments_path, attachments, attachment_bytes)
        seeded = time.perf_counter() - started
        db_bytes = db_path.stat().st_size
        print(f"seeded {tickets} tickets, {attachments} attachments in {seeded:.1f} s")

        rss_before = _rss_mib()
        started = time.perf_counter()
        created = await create_backup(settings, out_dir=work / "backups")
        create_s = time.perf_counter() - started
        rss_create = _rss_mib()
        parts = {p.name: p.stat().st_size for p in created.path.iterdir()}
        print(f"create  {create_s:6.1f} s  {created.path}")

        started = time.perf_counter()
        verify_backup(settings, created.path)
        verify_s = time.perf_counter() - started
        print(f"verify  {verify_s:6.1f} s")

        target_var = work / "restored"
        target_var.mkdir()
        shutil.copy(var / "secrets.json", target_var / "secrets.json")
        target = _settings(target_var, f"sqlite+aiosqlite:///{target_var / 'helpdesk.db'}")
        started = time.perf_counter()
        await restore_backup(target, created.path)
        restore_s = time.perf_counter() - started
        print(f"restore {restore_s:6.1f} s")
        restored = sqlite3.connect(target_var / "helpdesk.db")
        count = restored.execute("SELECT count(*) FROM tickets").fetchone()[0]
        restored.close()
        assert count == tickets, (count, tickets)

        result = {
            "tickets": tickets,
            "attachments": attachments,
            "attachment_bytes": attachment_bytes,
            "database_bytes": db_bytes,
            "attachment_store_bytes": sum(
                p.stat().st_size for p in settings.attachments_path.rglob("*") if p.is_file()
            ),
            "backup_bytes": sum(parts.values()),
            "parts": parts,
            "create_seconds": round(create_s, 2),
            "verify_seconds": round(verify_s, 2),
            "restore_seconds": round(restore_s, 2),
            "peak_rss_mib_before_create": round(rss_before, 1),
            "peak_rss_mib_after_create": round(rss_create, 1),
            "peak_rss_mib_end": round(_rss_mib(), 1),
        }
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--attachments", type=int, default=1_000)
    parser.add_argument("--attachment-bytes", type=int, default=64 * 1024)
    args = parser.parse_args()
    result = asyncio.run(run(args.tickets, args.users, args.attachments, args.attachment_bytes))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
