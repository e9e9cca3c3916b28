"""The `helpdesk backup` subcommands (wired into `helpdesk.cli` by `add_backup_parser`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

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
    prune = actions.add_parser(
        "prune", help="delete backups older than HELPDESK_BACKUP_RETENTION_DAYS"
    )
    prune.set_defaults(func=cmd_prune)


def _settings() -> Any:
    from helpdesk.settings import get_settings

    return get_settings()


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _fail(action: str, exc: Exception) -> int:
    print(f"helpdesk backup {action}: {exc}", file=sys.stderr)
    return 1


def cmd_create(args: argparse.Namespace) -> int:
    from helpdesk.backup import BackupError
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
    from helpdesk.backup import BackupError
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


def cmd_restore(args: argparse.Namespace) -> int:
    from helpdesk.backup import BackupError
    from helpdesk.backup.progress import Progress
    from helpdesk.backup.restore import restore_backup

    _logging()
    try:
        with Progress("backup restore") as progress:
            checked = asyncio.run(restore_backup(_settings(), args.path, progress=progress))
    except BackupError as exc:
        return _fail("restore", exc)
    print(
        f"restored {checked.manifest['counts']['tickets']} tickets from {args.path}; next: "
        "`helpdesk migrate`, `helpdesk audit verify`, then start the worker (its reconciler "
        "starts the open tickets' workflows again)"
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from helpdesk.backup.retention import prune

    _logging()
    settings = _settings()
    removed = prune(settings.backups_path, settings.backup_retention_days)
    for path in removed:
        print(f"removed {path}")
    logging.getLogger("helpdesk.backup").info(
        "backup prune: %d removed (retention %d days)", len(removed), settings.backup_retention_days
    )
    return 0
