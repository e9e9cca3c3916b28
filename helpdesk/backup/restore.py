"""`helpdesk backup verify` (check a backup without restoring) and `helpdesk backup restore`
(into an empty database and an empty attachment store).

Restore reads every part twice: a first pass authenticates every segment and checks the
manifest's sizes and SHA-256s (exactly what verify does); only then does the second pass
write, each segment authenticated again before it is handed on, the SQLite file moved into
place (or PostgreSQL's single transaction committed) last. A failure leaves the target as
it was: empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpdesk.backup import postgres_source, sqlite_source
from helpdesk.backup.attachments import keys_digest, read_objects
from helpdesk.backup.errors import BackupError
from helpdesk.backup.keys import backup_key
from helpdesk.backup.progress import Progress
from helpdesk.backup.sealed import read_manifest, read_part
from helpdesk.crypto import DataKey
from helpdesk.settings import Settings
from helpdesk.storage.configured import build_store
from helpdesk.storage.local import LocalEncryptedStore
from helpdesk.storage.store import AttachmentStore


@dataclass(frozen=True)
class Checked:
    path: Path
    manifest: dict[str, Any]


class _Backup:
    def __init__(self, path: Path, key: DataKey) -> None:
        self.path = path
        self.key = key
        self.backup_id, self.manifest = read_manifest(path, key)
        if self.manifest.get("format") != 1:
            raise BackupError(f"unknown backup format {self.manifest.get('format')}")

    def part(self, name: str, progress: Progress | None = None) -> Iterator[bytes]:
        expected = self.manifest["parts"][name]
        if progress is not None:
            progress.phase(name, int(expected["plaintext_bytes"]))
        for chunk in read_part(self.path, expected, self.key, self.backup_id, name):
            if progress is not None:
                progress.advance(len(chunk))
            yield chunk

    def check(self, progress: Progress) -> list[str]:
        """Authenticate everything and compare it with the manifest; the object keys."""
        database = self.manifest["database"]
        if database["engine"] == "sqlite":
            image = bytearray()
            for chunk in self.part("database", progress):
                image += chunk
            _check_sqlite_image(image, self.manifest["counts"])
            del image
        else:
            for _ in self.part("database", progress):
                pass
        keys = []
        chunks = self.part("attachments", progress)
        for key, _data in read_objects(chunks):
            keys.append(key)
        for _ in chunks:  # the tar reader may stop before the stream's last bytes
            pass
        expected = self.manifest["attachments"]
        if len(keys) != expected["objects"] or keys_digest(keys) != expected["keys_sha256"]:
            raise BackupError("the attachment part does not hold the objects the manifest lists")
        return keys


def _check_sqlite_image(image: bytearray, counts: dict[str, int]) -> None:
    if len(image) >= 20 and image[18:20] == b"\x02\x02":
        # A WAL database's header; in memory it opens only as a rollback-journal one.
        image[18:20] = b"\x01\x01"
    memory = sqlite3.connect(":memory:")
    try:
        memory.deserialize(image)  # SQLite copies the buffer: no second copy here
        result = memory.execute("PRAGMA quick_check").fetchone()
        tickets = memory.execute("SELECT count(*) FROM tickets").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the database snapshot does not open: {exc}") from exc
    finally:
        memory.close()
    if result is None or result[0] != "ok":
        raise BackupError("the database snapshot fails SQLite's quick_check")
    if tickets != counts["tickets"]:
        raise BackupError("the database snapshot's ticket count differs from the manifest")


def verify_backup(settings: Settings, path: Path, progress: Progress | None = None) -> Checked:
    """Check a backup without restoring it; raises `BackupError` on the first problem."""
    progress = progress or Progress("backup verify", enabled=False)
    backup = _Backup(path, backup_key(settings))
    backup.check(progress)
    manifest = backup.manifest
    progress.summary(
        "%s intact: %d tickets, %d attachments",
        path.name,
        manifest["counts"]["tickets"],
        manifest["attachments"]["objects"],
    )
    return Checked(path=path, manifest=manifest)


async def _refuse_unless_store_empty(store: AttachmentStore, keys_hint: list[str]) -> None:
    if isinstance(store, LocalEncryptedStore):
        if store.files():
            raise BackupError(
                f"refusing to restore: the attachment store {store.root} is not empty"
            )
        return
    for key in keys_hint:
        if await store.exists(key):
            raise BackupError("refusing to restore: the attachment store already holds objects")


async def restore_backup(
    settings: Settings,
    path: Path,
    *,
    store: AttachmentStore | None = None,
    progress: Progress | None = None,
) -> Checked:
    """Restore a backup into the settings' (empty) database and attachment store."""
    progress = progress or Progress("backup restore", enabled=False)
    backup = _Backup(path, backup_key(settings))
    engine = backup.manifest["database"]["engine"]
    wanted = "sqlite" if settings.is_sqlite else "postgresql"
    if engine != wanted:
        raise BackupError(f"this is a {engine} backup; the target database is {wanted}")
    own_store = store is None
    store = store or build_store(settings)
    try:
        sqlite_target: sqlite_source.SqliteTarget | None = None
        if engine == "sqlite":
            target = sqlite_source.sqlite_path(settings.database_url)
            if target is None:
                raise BackupError("cannot restore into an in-memory SQLite database")
            sqlite_source.refuse_unless_empty(target)
        else:
            await postgres_source.refuse_unless_empty(settings.database_url)
        # Pass 1: everything authenticated and as the manifest says, before any write.
        keys = backup.check(progress)
        await _refuse_unless_store_empty(store, keys)

        # Pass 2: write. The database file is moved into place (or committed) last.
        if engine == "sqlite":
            assert target is not None
            sqlite_target = sqlite_source.SqliteTarget(target)
            try:
                for chunk in backup.part("database", progress):
                    sqlite_target.write(chunk)
            except BaseException:
                sqlite_target.discard()
                raise
        written = await _restore_objects(backup, store, progress, sqlite_target)
        try:
            if sqlite_target is not None:
                sqlite_target.commit(backup.manifest["parts"]["database"]["plaintext_sha256"])
            else:
                await postgres_source.restore(
                    settings.database_url, backup.part("database", progress)
                )
        except BaseException:
            for key in written:
                await store.delete(key)
            raise
    finally:
        if own_store:
            await store.close()
    manifest = backup.manifest
    progress.summary(
        "%s restored: %d tickets, %d attachments",
        path.name,
        manifest["counts"]["tickets"],
        len(written),
    )
    return Checked(path=path, manifest=manifest)


async def _restore_objects(
    backup: _Backup,
    store: AttachmentStore,
    progress: Progress,
    sqlite_target: sqlite_source.SqliteTarget | None,
) -> list[str]:
    written: list[str] = []
    try:
        chunks = backup.part("attachments", progress)
        for key, data in read_objects(chunks):
            await store._write(key, _once(data))  # raw ciphertext, as stored
            written.append(key)
        for _ in chunks:
            pass
    except BaseException:
        for key in written:
            await store.delete(key)
        if sqlite_target is not None:
            sqlite_target.discard()
        raise
    return written


async def _once(data: bytes) -> Any:
    yield data
