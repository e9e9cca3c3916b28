"""Sealed files of a backup: parts streamed in authenticated segments, and the manifest.

A part is `helpdesk.storage.segments`'s segmented AES-256-GCM stream under the backup key, with
1 MiB segments and the binding id `part_binding(backup_id, name)` in every segment's
associated data. The manifest is one AES-GCM message:

    b"HDBM" | version (1) | backup key id (16) | backup id (16) | nonce (12) | sealed JSON
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpdesk.backup.errors import BackupError
from helpdesk.crypto import DataKey, IntegrityError
from helpdesk.storage.segments import SegmentDecryptor, SegmentEncryptor

SEGMENT_BYTES = 1024 * 1024
READ_BYTES = 4 * 1024 * 1024
MANIFEST_MAGIC = b"HDBM"
MANIFEST_VERSION = 1
_MANIFEST_HEADER = struct.Struct(">4sB16s16s")
_NONCE = 12


def part_binding(backup_id: uuid.UUID, name: str) -> uuid.UUID:
    """The id bound into every segment of one part: a segment of another part or of
    another backup fails authentication here."""
    digest = hashlib.sha256(b"helpdesk-backup-part|" + backup_id.bytes + name.encode()).digest()
    return uuid.UUID(bytes=digest[:16])


def create_private(path: Path) -> BinaryIO:
    """A new file only this user can read (refuses to overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


@dataclass
class PartSummary:
    """What the manifest records of one part."""

    file: str
    plaintext_bytes: int
    plaintext_sha256: str
    stored_bytes: int
    stored_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PartWriter:
    """A file-like sink: plaintext in, sealed segments out to ``<dir>/<name>.enc``.

    Written by streaming producers (pg_dump's stdout, tarfile in stream mode, slices of the
    SQLite image); `close()` seals the final segment and fsyncs."""

    def __init__(self, directory: Path, name: str, key: DataKey, backup_id: uuid.UUID) -> None:
        self.name = name
        self.file = f"{name}.enc"
        self._out = create_private(directory / self.file)
        self._sealer = SegmentEncryptor(key, part_binding(backup_id, name), SEGMENT_BYTES)
        self._plain = hashlib.sha256()
        self._stored = hashlib.sha256()
        self._plain_bytes = 0
        self._stored_bytes = 0
        self._emit(self._sealer.header)
        self.summary: PartSummary | None = None

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._stored.update(data)
            self._stored_bytes += len(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)
        self._plain.update(chunk)
        self._plain_bytes += len(chunk)
        self._emit(self._sealer.update(chunk))
        return len(chunk)

    def close(self) -> PartSummary:
        if self.summary is None:
            self._emit(self._sealer.finish())
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
            self.summary = PartSummary(
                file=self.file,
                plaintext_bytes=self._plain_bytes,
                plaintext_sha256=self._plain.hexdigest(),
                stored_bytes=self._stored_bytes,
                stored_sha256=self._stored.hexdigest(),
            )
        return self.summary

    def abort(self) -> None:
        self._out.close()


def read_part(
    directory: Path, expected: dict[str, Any], key: DataKey, backup_id: uuid.UUID, name: str
) -> Iterator[bytes]:
    """Authenticated plaintext of a part, segment by segment; at the end the sizes and
    SHA-256s must be the manifest's. Raises `BackupError` on any mismatch: a consumer must
    not commit what it received until this iterator has finished."""
    path = directory / expected["file"]
    opener = SegmentDecryptor(key, part_binding(backup_id, name))
    plain, stored = hashlib.sha256(), hashlib.sha256()
    plain_bytes = stored_bytes = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(READ_BYTES):
                stored.update(chunk)
                stored_bytes += len(chunk)
                out = opener.update(chunk)
                if out:
                    plain.update(out)
                    plain_bytes += len(out)
                    yield out
            last = opener.finish()
    except FileNotFoundError as exc:
        raise BackupError(f"{expected['file']} is missing") from exc
    except IntegrityError as exc:
        raise BackupError(f"{expected['file']}: {exc}") from exc
    plain.update(last)
    plain_bytes += len(last)
    if stored.hexdigest() != expected["stored_sha256"] or stored_bytes != expected["stored_bytes"]:
        raise BackupError(f"{expected['file']}: size or SHA-256 differs from the manifest")
    if (
        plain.hexdigest() != expected["plaintext_sha256"]
        or plain_bytes != expected["plaintext_bytes"]
    ):
        raise BackupError(f"{expected['file']}: content SHA-256 differs from the manifest")
    if last:
        yield last


def _manifest_aad(header: bytes) -> bytes:
    return b"helpdesk-backup-manifest|" + header


def write_manifest(
    directory: Path, key: DataKey, backup_id: uuid.UUID, data: dict[str, Any]
) -> None:
    header = _MANIFEST_HEADER.pack(
        MANIFEST_MAGIC, MANIFEST_VERSION, key.key_id.bytes, backup_id.bytes
    )
    nonce = os.urandom(_NONCE)
    body = json.dumps(data, sort_keys=True).encode()
    sealed = AESGCM(key.material).encrypt(nonce, body, _manifest_aad(header))
    with create_private(directory / "manifest.enc") as out:
        out.write(header + nonce + sealed)
        out.flush()
        os.fsync(out.fileno())


def read_manifest(directory: Path, key: DataKey) -> tuple[uuid.UUID, dict[str, Any]]:
    """The backup id and the manifest, authenticated under `key`."""
    try:
        raw = (directory / "manifest.enc").read_bytes()
    except FileNotFoundError as exc:
        raise BackupError(f"{directory} has no manifest.enc: not a backup") from exc
    if len(raw) < _MANIFEST_HEADER.size + _NONCE + 16:
        raise BackupError("manifest.enc is truncated")
    magic, version, key_id, backup_id = _MANIFEST_HEADER.unpack_from(raw)
    if magic != MANIFEST_MAGIC or version != MANIFEST_VERSION:
        raise BackupError("manifest.enc has an unknown format")
    if key_id != key.key_id.bytes:
        raise BackupError(
            "this backup was sealed with another backup key (HELPDESK_BACKUP_KEY differs)"
        )
    header = raw[: _MANIFEST_HEADER.size]
    nonce = raw[_MANIFEST_HEADER.size : _MANIFEST_HEADER.size + _NONCE]
    try:
        body = AESGCM(key.material).decrypt(
            nonce, raw[_MANIFEST_HEADER.size + _NONCE :], _manifest_aad(header)
        )
    except InvalidTag as exc:
        raise BackupError("manifest.enc failed authentication (tampered)") from exc
    return uuid.UUID(bytes=backup_id), json.loads(body)
