"""SQLite: an online, consistent snapshot as bytes in memory, and a restore into a new file.

The snapshot uses SQLite's backup API into an in-memory database (one step: a read
transaction, so the API and worker keep writing meanwhile under WAL), then
`Connection.serialize()`: the image of a database file, never written to disk unsealed.
It costs about twice the database's size in memory for a moment (the in-memory copy and its
serialization); the in-memory copy is dropped before sealing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from helpdesk.backup.errors import BackupError


@dataclass
class Snapshot:
    """A database snapshot and what the manifest says of it, read from the same snapshot."""

    engine: str
    engine_version: str
    schema_revision: str | None
    counts: dict[str, int]
    attachment_keys: list[str]
    attachment_bytes: int = 0  # plaintext sizes: the estimate of the copy's progress
    image: bytes = b""
    details: dict[str, Any] = field(default_factory=dict)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def facts_query(connection: Any) -> tuple[str | None, dict[str, int], list[str], int]:
    """Schema revision, row counts, referenced attachment objects and their plaintext
    bytes (DB-API connection)."""

    def scalar(sql: str) -> Any:
        cursor = connection.execute(sql)
        row = cursor.fetchone()
        return row[0] if row else None

    revision = scalar("SELECT version_num FROM alembic_version")
    counts = {
        name: int(scalar(f"SELECT count(*) FROM {name}"))  # noqa: S608 - fixed table names
        for name in ("tickets", "comments", "attachments", "audit_log", "data_keys", "users")
    }
    rows = connection.execute(
        "SELECT storage_key, size FROM attachments WHERE storage_key IS NOT NULL "
        "ORDER BY storage_key"
    ).fetchall()
    return revision, counts, [row[0] for row in rows], sum(int(row[1] or 0) for row in rows)


def snapshot(path: Path) -> Snapshot:
    """The database at `path` as one consistent file image, in memory."""
    if not path.exists():
        raise BackupError(f"no SQLite database at {path}")
    source = sqlite3.connect(path)
    memory = sqlite3.connect(":memory:")
    try:
        source.backup(memory)  # pages=-1: the whole database in one read transaction
        revision, counts, keys, attachment_bytes = facts_query(memory)
        image = memory.serialize()
    finally:
        memory.close()
        source.close()
    return Snapshot(
        engine="sqlite",
        engine_version=sqlite3.sqlite_version,
        schema_revision=revision,
        counts=counts,
        attachment_keys=keys,
        attachment_bytes=attachment_bytes,
        image=image,
    )


def image_slices(image: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(image)
    for start in range(0, len(view), size):
        yield view[start : start + size]


def refuse_unless_empty(path: Path) -> None:
    """Restore only into a database that does not exist yet (or an empty file)."""
    if path.exists() and path.stat().st_size > 0:
        raise BackupError(f"refusing to restore: the target database {path} is not empty")
    for suffix in ("-wal", "-shm", "-journal"):
        other = path.with_name(path.name + suffix)
        if other.exists() and other.stat().st_size > 0:
            raise BackupError(f"refusing to restore: {other} exists")


class SqliteTarget:
    """Writes the restored image to a temporary file beside the target; `commit` checks it
    and moves it into place, `discard` removes it."""

    def __init__(self, path: Path) -> None:
        refuse_unless_empty(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_name(f".{path.name}.restoring-{uuid.uuid4().hex[:8]}")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._out = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._digest.update(data)

    def commit(self, expected_sha256: str) -> None:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        if self._digest.hexdigest() != expected_sha256:
            self.discard()
            raise BackupError("the restored database differs from the manifest")
        check = sqlite3.connect(self.tmp)
        try:
            result = check.execute("PRAGMA quick_check").fetchone()
            check.execute("PRAGMA journal_mode=WAL")
        finally:
            check.close()
        if result is None or result[0] != "ok":
            self.discard()
            raise BackupError("the restored database fails SQLite's quick_check")
        refuse_unless_empty(self.path)
        for suffix in ("-wal", "-shm", "-journal"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if not self._out.closed:
            self._out.close()
        self.tmp.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            self.tmp.with_name(self.tmp.name + suffix).unlink(missing_ok=True)
