"""`helpdesk backup create`: snapshot the database and the attachment store, sealed."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from helpdesk.backup import postgres_source, sqlite_source
from helpdesk.backup.attachments import keys_digest, write_objects
from helpdesk.backup.errors import BackupError
from helpdesk.backup.keys import backup_key
from helpdesk.backup.progress import Progress
from helpdesk.backup.sealed import SEGMENT_BYTES, PartWriter, write_manifest
from helpdesk.settings import Settings
from helpdesk.storage.configured import build_store
from helpdesk.storage.store import AttachmentStore

FORMAT = 1


@dataclass(frozen=True)
class Created:
    path: Path
    manifest: dict[str, Any]

    @property
    def stored_bytes(self) -> int:
        return sum(int(p["stored_bytes"]) for p in self.manifest["parts"].values())


def backup_name(now: datetime, backup_id: uuid.UUID) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{backup_id.hex[:8]}"


def _version() -> str:
    try:
        return metadata.version("helpdesk")
    except metadata.PackageNotFoundError:
        return "unknown"


async def create_backup(
    settings: Settings,
    *,
    out_dir: Path | None = None,
    store: AttachmentStore | None = None,
    progress: Progress | None = None,
) -> Created:
    """Write one backup under `out_dir` (default the settings' backup directory).

    The files are written into a hidden ``.partial`` directory renamed into place at the
    end, so a backup directory that exists is a whole one."""
    key = backup_key(settings)
    progress = progress or Progress("backup create", enabled=False)
    backup_id = uuid.uuid4()
    now = datetime.now(UTC)
    root = out_dir or settings.backups_path
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = backup_name(now, backup_id)
    partial = root / f".{name}.partial"
    partial.mkdir(mode=0o700)
    own_store = store is None
    store = store or build_store(settings)
    try:
        database = PartWriter(partial, "database", key, backup_id)
        try:
            snapshot = await _snapshot_database(settings, database, progress)
        except BaseException:
            database.abort()
            raise
        db_summary = database.close()

        attachments = PartWriter(partial, "attachments", key, backup_id)
        progress.phase("attachments", snapshot.attachment_bytes or None)
        try:
            copied, missing, copied_bytes = await write_objects(
                store, snapshot.attachment_keys, attachments, progress.advance
            )
        except BaseException:
            attachments.abort()
            raise
        att_summary = attachments.close()

        manifest: dict[str, Any] = {
            "format": FORMAT,
            "backup_id": str(backup_id),
            "created_at": now.isoformat(),
            "helpdesk_version": _version(),
            "schema_revision": snapshot.schema_revision,
            "database": {
                "engine": snapshot.engine,
                "engine_version": snapshot.engine_version,
                **snapshot.details,
            },
            "counts": snapshot.counts,
            "attachments": {
                "objects": len(copied),
                "bytes": copied_bytes,
                "keys_sha256": keys_digest(copied),
                "missing": missing,
            },
            "segment_bytes": SEGMENT_BYTES,
            "parts": {"database": db_summary.as_dict(), "attachments": att_summary.as_dict()},
        }
        write_manifest(partial, key, backup_id, manifest)
        final = root / name
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if own_store:
            await store.close()
    created = Created(path=final, manifest=manifest)
    progress.summary(
        "%s: %d tickets, %d attachments (%d missing), database %d bytes, %d bytes sealed",
        final.name,
        snapshot.counts["tickets"],
        len(copied),
        len(missing),
        db_summary.plaintext_bytes,
        created.stored_bytes,
    )
    return created


async def _snapshot_database(
    settings: Settings, sink: PartWriter, progress: Progress
) -> sqlite_source.Snapshot:
    if settings.is_sqlite:
        path = sqlite_source.sqlite_path(settings.database_url)
        if path is None:
            raise BackupError("an in-memory SQLite database cannot be backed up")
        progress.phase("database snapshot", None)
        snapshot = sqlite_source.snapshot(path)
        image = snapshot.image
        snapshot.image = b""
        progress.phase("database", len(image))
        for piece in sqlite_source.image_slices(image, SEGMENT_BYTES):
            sink.write(piece)
            progress.advance(len(piece))
        del image
        return snapshot

    progress.phase("database (pg_dump)", None)

    def write(chunk: bytes) -> None:
        sink.write(chunk)
        progress.advance(len(chunk))

    return await postgres_source.dump(settings.database_url, write)
