"""`helpdesk backup prune`: delete backups older than `HELPDESK_BACKUP_RETENTION_DAYS`.

This is where crypto-shredding reaches backups: a ticket deleted today stays readable from
the backups made before today (they hold its data key) until the last of them is pruned."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

_NAME = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{8}$")
_PARTIAL = re.compile(r"^\.(\d{8}T\d{6}Z)-[0-9a-f]{8}\.partial$")


def backup_time(path: Path) -> datetime | None:
    """When a backup (or a leftover partial one) was made, from its directory name."""
    match = _NAME.match(path.name) or _PARTIAL.match(path.name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def list_backups(root: Path) -> list[Path]:
    """Whole backups under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def prune(root: Path, retention_days: int, now: datetime | None = None) -> list[Path]:
    """Delete backups older than the retention (and partial ones older than a day)."""
    now = now or datetime.now(UTC)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        made = backup_time(path)
        if made is None or not path.is_dir():
            continue
        limit = (
            timedelta(days=1) if path.name.endswith(".partial") else timedelta(days=retention_days)
        )
        if now - made > limit:
            shutil.rmtree(path)
            removed.append(path)
    return removed
