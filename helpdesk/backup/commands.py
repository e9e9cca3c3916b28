"""The `helpdesk backup` subcommands (wired into `helpdesk.cli` by `add_backup_parser`).

`helpdesk --help` imports this module to build its parser, so, as in `helpdesk.cli`, each
command imports what it runs inside its function (the database, the models, Temporal, rich)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpdesk.backup import BackupError
from helpdesk.backup.retention import prune
from helpdesk.settings import get_settings

EPILOG = (
    "Backups are sealed under HELPDESK_BACKUP_KEY. A restore also needs the KEKs, the audit "
    "key and the blind-index key the data was written with (they are not in the backup)."
)


def add_backup_parser(commands: Any) -> None:
    """`helpdesk backup create | verify | restore | prune`."""
    backup = commands.add_parser("backup", help="backups and disaster recovery", epilog=EPILOG)
    actions = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="an online, consistent, encrypted backup of the database and attachments"
    )
    create.add_argument("--out", type=Path, default=None, help="directory (default var/backups)")
    create.set_defaults(func=cmd_create)
    verify = actions.add_parser("verify", help="check a backup without restoring it")
    verify.add_argument("path", type=Path)
    verify.set_defaults(func=cmd_verify)
    restore = actions.add_parser(
        "restore", help="restore into an empty database and an empty attachment store"
    )
    restore.add_argument("path", type=Path)
    restore.set_defaults(func=cmd_restore)
    resume = actions.add_parser(
        "resume-workflows",
        help="after a restore: start the workflow of every live ticket, whatever its age, "
        "with its SLA clocks from the database (needs Temporal and a worker)",
    )
    resume.set_defaults(func=cmd_resume_workflows)
    prune = actions.add_parser(
        "prune", help="delete backups older than HELPDESK_BACKUP_RETENTION_DAYS"
    )
    prune.set_defaults(func=cmd_prune)


def _settings() -> Any:
    return get_settings()


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _fail(action: str, exc: Exception) -> int:
    print(f"helpdesk backup {action}: {exc}", file=sys.stderr)
    return 1


def cmd_create(args: argparse.Namespace) -> int:
    from helpdesk.backup.create import create_backup
    from helpdesk.backup.progress import Progress

    _logging()
    try:
        with Progress("backup create") as progress:
            created = asyncio.run(create_backup(_settings(), out_dir=args.out, progress=progress))
    except BackupError as exc:
        return _fail("create", exc)
    missing = created.manifest["attachments"]["missing"]
    if missing:
        print(f"{len(missing)} attachment objects were gone (deleted since the snapshot)")
    print(created.path)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from helpdesk.backup.progress import Progress
    from helpdesk.backup.restore import verify_backup

    _logging()
    try:
        with Progress("backup verify") as progress:
            checked = verify_backup(_settings(), args.path, progress)
    except BackupError as exc:
        return _fail("verify", exc)
    m = checked.manifest
    print(
        f"backup intact: {m['counts']['tickets']} tickets, {m['attachments']['objects']} "
        f"attachments, made {m['created_at']} ({m['database']['engine']}, "
        f"schema {m['schema_revision']})"
    )
    return 0


def _record_drill(backup: Path, tickets: int) -> None:
    """A successful restore is a restore drill: noted beside the backups it came from, for
    the compliance check's "last restore drill" control. Not fatal if it cannot be written."""
    from helpdesk.compliance import RESTORE_DRILLS

    line = json.dumps(
        {"at": datetime.now(UTC).isoformat(), "backup": backup.name, "tickets": tickets}
    )
    try:
        with (backup.parent / RESTORE_DRILLS).open("a") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        print(f"could not record the restore drill: {type(exc).__name__}", file=sys.stderr)


def cmd_restore(args: argparse.Namespace) -> int:
    from helpdesk.backup.progress import Progress
    from helpdesk.backup.restore import restore_backup

    _logging()
    try:
        with Progress("backup restore") as progress:
            checked = asyncio.run(restore_backup(_settings(), args.path, progress=progress))
    except BackupError as exc:
        return _fail("restore", exc)
    from helpdesk.audit_commands import anchor_database

    # The restored chain ends where the backup did: anchor it for this site, so `audit
    # verify` holds later rows against it (an older site's anchors would call it cut short).
    print(asyncio.run(anchor_database(_settings())))
    _record_drill(Path(args.path), checked.manifest["counts"]["tickets"])
    print(
        f"restored {checked.manifest['counts']['tickets']} tickets from {args.path}; next: "
        "`helpdesk migrate`, `helpdesk audit verify`, start the worker, then "
        "`helpdesk backup resume-workflows` (the worker's reconciler looks back 72 hours only)"
    )
    return 0


# Every live ticket, whatever its age (the worker's reconciler looks back 72 hours).
ALL_TICKETS_HOURS = 100 * 365 * 24.0


async def _resume_workflows(settings: Any) -> int:
    from helpdesk.runtime import build_runtime
    from helpdesk.services import ticket_reconcile
    from helpdesk.services.sessions import prepare_runtime
    from helpdesk.temporal import connect

    runtime = prepare_runtime(build_runtime(settings))
    try:
        runtime.temporal = await connect(settings)
        return await ticket_reconcile.reconcile_workflows(
            runtime, grace_seconds=0, window_hours=ALL_TICKETS_HOURS
        )
    finally:
        await runtime.close()


def cmd_resume_workflows(args: argparse.Namespace) -> int:
    _logging()
    started = asyncio.run(_resume_workflows(_settings()))
    print(f"started {started} ticket workflows (live tickets that had none)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    _logging()
    settings = _settings()
    removed = prune(settings.backups_path, settings.backup_retention_days)
    for path in removed:
        print(f"removed {path}")
    logging.getLogger("helpdesk.backup").info(
        "backup prune: %d removed (retention %d days)", len(removed), settings.backup_retention_days
    )
    return 0
