"""Attachment bytes at rest: streamed AES-256-GCM under the ticket's data key, behind one
interface with a local-filesystem and an Azure Blob Storage implementation.

Stored object format (version 1)::

    header   = b"HDAT" | version (1 byte) | data key id (16) | segment size (4, big-endian)
    segment  = nonce (12) | AES-GCM(plaintext segment) | tag (16)

Plaintext is cut into fixed segments (64 KiB; the last one shorter, possibly empty), each
sealed with a fresh random nonce and associated data binding the header, the attachment id,
the segment index and a final-segment flag. So a flipped byte, a segment moved, dropped or
copied from another attachment, or an object cut short at a segment boundary all fail
authentication (`helpdesk.crypto.IntegrityError`) instead of yielding wrong bytes. Every
segment is authenticated before any of its bytes are handed on.

The stores only move opaque ciphertext; `AttachmentStore.put`/`get` encrypt and decrypt.
Destroying the ticket's data key makes every stored copy unreadable (crypto-shredding).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import struct
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpdesk.crypto import DataKey, IntegrityError

if TYPE_CHECKING:
    from helpdesk.settings import Settings

MAGIC = b"HDAT"
FORMAT_VERSION = 1
SEGMENT_BYTES = 64 * 1024
_HEADER = struct.Struct(">4sB16sI")
_NONCE = 12
_TAG = 16
_SEGMENT_AAD = struct.Struct(">QB")
# Plaintext buffered per filesystem write / blob block (fewer thread hops and requests).
_LOCAL_WRITE_BYTES = 1024 * 1024
_BLOB_BLOCK_BYTES = 4 * 1024 * 1024
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class ObjectMissing(Exception):
    """No stored object under this key (never stored, deleted, or destroyed as infected)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What `put` stored: the plaintext's size and SHA-256, and the bytes at rest."""

    size: int
    sha256: str
    stored_bytes: int


# --- streaming encryption ---------------------------------------------------------------


class SegmentEncryptor:
    """Seals a plaintext stream segment by segment (see the module docstring)."""

    def __init__(
        self, key: DataKey, attachment_id: uuid.UUID, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self._aead = AESGCM(key.material)
        self._segment = segment_bytes
        self.header = _HEADER.pack(MAGIC, FORMAT_VERSION, key.key_id.bytes, segment_bytes)
        self._aad_prefix = self.header + attachment_id.bytes
        self._buffer = bytearray()
        self._index = 0
        self._finished = False

    def _seal(self, data: bytes | bytearray | memoryview, final: bool) -> bytes:
        nonce = os.urandom(_NONCE)
        aad = self._aad_prefix + _SEGMENT_AAD.pack(self._index, 1 if final else 0)
        self._index += 1
        return nonce + self._aead.encrypt(nonce, bytes(data), aad)

    def update(self, data: bytes) -> bytes:
        """Ciphertext of every segment that is complete and known not to be the last."""
        if self._finished:
            raise ValueError("encryptor already finished")
        self._buffer += data
        out = bytearray()
        offset = 0
        # Keep at least one byte back: only the segment that ends the stream is final.
        with memoryview(self._buffer) as view:
            while len(view) - offset > self._segment:
                out += self._seal(view[offset : offset + self._segment], final=False)
                offset += self._segment
        del self._buffer[:offset]
        return bytes(out)

    def finish(self) -> bytes:
        """The final segment (possibly empty plaintext)."""
        if self._finished:
            raise ValueError("encryptor already finished")
        self._finished = True
        sealed = self._seal(self._buffer, final=True)
        self._buffer.clear()
        return sealed


class SegmentDecryptor:
    """Opens a stream sealed by `SegmentEncryptor`; raises `IntegrityError` on any tamper."""

    def __init__(self, key: DataKey, attachment_id: uuid.UUID) -> None:
        self._key = key
        self._attachment_id = attachment_id
        self._aead = AESGCM(key.material)
        self._buffer = bytearray()
        self._sealed_size = 0
        self._aad_prefix = b""
        self._index = 0
        self._finished = False

    def _read_header(self) -> bool:
        if self._sealed_size:
            return True
        if len(self._buffer) < _HEADER.size:
            return False
        magic, version, key_id, segment = _HEADER.unpack_from(self._buffer)
        if magic != MAGIC or version != FORMAT_VERSION or not 0 < segment <= 16 * 1024 * 1024:
            raise IntegrityError("stored attachment has an unknown format")
        if key_id != self._key.key_id.bytes:
            raise IntegrityError("stored attachment was sealed with another data key")
        self._aad_prefix = bytes(self._buffer[: _HEADER.size]) + self._attachment_id.bytes
        self._sealed_size = _NONCE + segment + _TAG
        del self._buffer[: _HEADER.size]
        return True

    def _open(self, sealed: bytes | bytearray | memoryview, final: bool) -> bytes:
        sealed = bytes(sealed)
        aad = self._aad_prefix + _SEGMENT_AAD.pack(self._index, 1 if final else 0)
        try:
            plain = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
        except InvalidTag as exc:
            raise IntegrityError(
                f"stored attachment failed authentication at segment {self._index}"
            ) from exc
        self._index += 1
        return plain

    def update(self, data: bytes) -> bytes:
        """Plaintext of every whole segment that is known not to be the last."""
        if self._finished:
            raise ValueError("decryptor already finished")
        self._buffer += data
        if not self._read_header():
            return b""
        out = bytearray()
        offset = 0
        with memoryview(self._buffer) as view:
            while len(view) - offset > self._sealed_size:
                out += self._open(view[offset : offset + self._sealed_size], final=False)
                offset += self._sealed_size
        del self._buffer[:offset]
        return bytes(out)

    def finish(self) -> bytes:
        """Plaintext of the final segment; the stream must end exactly there."""
        if self._finished:
            raise ValueError("decryptor already finished")
        self._finished = True
        if not self._read_header():
            raise IntegrityError("stored attachment is truncated")
        if len(self._buffer) < _NONCE + _TAG:
            raise IntegrityError("stored attachment is truncated")
        return self._open(self._buffer, final=True)


async def encrypt_stream(
    chunks: AsyncIterable[bytes], key: DataKey, attachment_id: uuid.UUID
) -> AsyncIterator[bytes]:
    """Ciphertext chunks (header first) of a plaintext stream."""
    encryptor = SegmentEncryptor(key, attachment_id)
    yield encryptor.header
    async for chunk in chunks:
        sealed = encryptor.update(chunk)
        if sealed:
            yield sealed
    yield encryptor.finish()


async def decrypt_stream(
    chunks: AsyncIterable[bytes], key: DataKey, attachment_id: uuid.UUID
) -> AsyncIterator[bytes]:
    """Authenticated plaintext chunks of a stored object."""
    decryptor = SegmentDecryptor(key, attachment_id)
    async for chunk in chunks:
        plain = decryptor.update(chunk)
        if plain:
            yield plain
    last = decryptor.finish()
    if last:
        yield last


# --- the interface ------------------------------------------------------------------------


def validate_storage_key(storage_key: str) -> str:
    """Storage keys are ids joined by ``/`` (no PHI, no dots, no traversal)."""
    if len(storage_key) > 255 or not _KEY_PATTERN.match(storage_key):
        raise ValueError("invalid storage key")
    return storage_key


def storage_key_for(ticket_id: uuid.UUID, attachment_id: uuid.UUID) -> str:
    """Where an attachment's bytes live: grouped by ticket so a ticket's go together."""
    return f"tickets/{ticket_id.hex}/{attachment_id.hex}"


def ticket_prefix(ticket_id: uuid.UUID) -> str:
    return f"tickets/{ticket_id.hex}"


class AttachmentStore(ABC):
    """Encrypted attachment bytes by storage key. Subclasses move ciphertext only."""

    async def put(
        self,
        storage_key: str,
        chunks: AsyncIterable[bytes],
        *,
        key: DataKey,
        attachment_id: uuid.UUID,
    ) -> StoredObject:
        """Encrypt and store a plaintext stream; measure its size and SHA-256 on the way.

        If `chunks` raises (too large, wrong type, client gone), nothing is left stored."""
        validate_storage_key(storage_key)
        digest = hashlib.sha256()
        size = 0

        async def measured() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                digest.update(chunk)
                yield chunk

        stored = await self._write(storage_key, encrypt_stream(measured(), key, attachment_id))
        return StoredObject(size=size, sha256=digest.hexdigest(), stored_bytes=stored)

    async def get(
        self, storage_key: str, *, key: DataKey, attachment_id: uuid.UUID
    ) -> AsyncIterator[bytes]:
        """Authenticated plaintext of a stored object, streamed.

        Raises `ObjectMissing` before the first chunk if nothing is stored, and
        `IntegrityError` (never garbled bytes) when the ciphertext was tampered with."""
        validate_storage_key(storage_key)
        raw = await self._open(storage_key)
        return decrypt_stream(raw, key, attachment_id)

    async def verify(
        self, storage_key: str, *, key: DataKey, attachment_id: uuid.UUID
    ) -> StoredObject:
        """Authenticate a whole stored object without handing out its bytes."""
        digest = hashlib.sha256()
        size = 0
        async for chunk in await self.get(storage_key, key=key, attachment_id=attachment_id):
            size += len(chunk)
            digest.update(chunk)
        return StoredObject(size=size, sha256=digest.hexdigest(), stored_bytes=-1)

    @abstractmethod
    async def _write(self, storage_key: str, ciphertext: AsyncIterator[bytes]) -> int:
        """Store the ciphertext stream atomically (all or nothing); bytes written."""

    @abstractmethod
    async def _open(self, storage_key: str) -> AsyncIterator[bytes]:
        """The stored ciphertext as chunks; `ObjectMissing` if there is none."""

    @abstractmethod
    async def read_raw(self, storage_key: str) -> bytes:
        """The ciphertext as stored (tests and tooling: prove it is not plaintext)."""

    @abstractmethod
    async def exists(self, storage_key: str) -> bool: ...

    @abstractmethod
    async def delete(self, storage_key: str) -> None:
        """Remove a stored object; nothing happens if it is already gone."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under a prefix (a ticket's attachments); how many."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections (Azure); the local store holds none."""


# --- local filesystem ---------------------------------------------------------------------


class LocalEncryptedStore(AttachmentStore):
    """Ciphertext files under a directory (default ``var/attachments``), mode 0600.

    Writes go to a temporary file in the same directory, are fsynced and then renamed, so
    a reader sees a whole object or none, and an aborted upload leaves nothing."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, storage_key: str) -> Path:
        return self.root / validate_storage_key(storage_key)

    async def _write(self, storage_key: str, ciphertext: AsyncIterator[bytes]) -> int:
        path = self._path(storage_key)
        await asyncio.to_thread(_make_dirs, path.parent)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        fd = await asyncio.to_thread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        written = 0
        try:
            pending = bytearray()
            async for chunk in ciphertext:
                pending += chunk
                if len(pending) >= _LOCAL_WRITE_BYTES:
                    written += await asyncio.to_thread(_write_all, fd, bytes(pending))
                    pending.clear()
            if pending:
                written += await asyncio.to_thread(_write_all, fd, bytes(pending))
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return written

    async def _open(self, storage_key: str) -> AsyncIterator[bytes]:
        path = self._path(storage_key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing("no stored object") from exc
        return _read_file(handle)

    async def read_raw(self, storage_key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(storage_key).read_bytes)
        except FileNotFoundError as exc:
            raise ObjectMissing("no stored object") from exc

    async def exists(self, storage_key: str) -> bool:
        return await asyncio.to_thread(self._path(storage_key).exists)

    async def delete(self, storage_key: str) -> None:
        path = self._path(storage_key)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        try:
            # Drop the ticket's directory once its last attachment is gone.
            await asyncio.to_thread(path.parent.rmdir)
        except OSError:
            pass

    async def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if not path.is_dir():
            return 0
        count = sum(1 for item in path.rglob("*") if item.is_file())
        await asyncio.to_thread(shutil.rmtree, path, True)
        return count

    def files(self) -> list[Path]:
        """Every stored file (tests: scan the store's raw bytes)."""
        if not self.root.exists():
            return []
        return [item for item in self.root.rglob("*") if item.is_file()]


def _make_dirs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        view = view[done:]
    return len(data)


async def _read_file(handle: Any) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(handle.read, _LOCAL_WRITE_BYTES)
            if not chunk:
                return
            yield chunk
    finally:
        handle.close()


# --- Azure Blob Storage -------------------------------------------------------------------


class AzureBlobStore(AttachmentStore):
    """The same ciphertext as block blobs in one container (async `azure-storage-blob`).

    Blocks are staged and committed only when the whole stream was read, so an aborted
    upload commits nothing (Azure discards uncommitted blocks on its own)."""

    def __init__(self, connection_string: str, container: str) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        self._service = BlobServiceClient.from_connection_string(connection_string)
        self._container_name = container
        self._container = self._service.get_container_client(container)
        self._container_ready = False
        self._lock = asyncio.Lock()

    async def _ready(self) -> Any:
        if not self._container_ready:
            from azure.core.exceptions import ResourceExistsError

            async with self._lock:
                if not self._container_ready:
                    try:
                        await self._container.create_container()
                    except ResourceExistsError:
                        pass
                    self._container_ready = True
        return self._container

    async def _write(self, storage_key: str, ciphertext: AsyncIterator[bytes]) -> int:
        container = await self._ready()
        blob = container.get_blob_client(validate_storage_key(storage_key))
        block_ids: list[str] = []
        pending = bytearray()
        written = 0

        async def stage(data: bytes) -> None:
            block_id = base64.b64encode(f"{len(block_ids):08d}".encode()).decode()
            await blob.stage_block(block_id, data, length=len(data))
            block_ids.append(block_id)

        async for chunk in ciphertext:
            pending += chunk
            written += len(chunk)
            if len(pending) >= _BLOB_BLOCK_BYTES:
                await stage(bytes(pending))
                pending.clear()
        if not block_ids:
            await blob.upload_blob(bytes(pending), overwrite=True, length=len(pending))
            return written
        if pending:
            await stage(bytes(pending))
        from azure.storage.blob import BlobBlock

        await blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids])
        return written

    async def _open(self, storage_key: str) -> AsyncIterator[bytes]:
        from azure.core.exceptions import ResourceNotFoundError

        container = await self._ready()
        blob = container.get_blob_client(validate_storage_key(storage_key))
        try:
            downloader = await blob.download_blob()
        except ResourceNotFoundError as exc:
            raise ObjectMissing("no stored object") from exc
        return _blob_chunks(downloader)

    async def read_raw(self, storage_key: str) -> bytes:
        data = bytearray()
        async for chunk in await self._open(storage_key):
            data += chunk
        return bytes(data)

    async def exists(self, storage_key: str) -> bool:
        container = await self._ready()
        result: bool = await container.get_blob_client(validate_storage_key(storage_key)).exists()
        return result

    async def delete(self, storage_key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        container = await self._ready()
        try:
            await container.delete_blob(validate_storage_key(storage_key))
        except ResourceNotFoundError:
            pass

    async def delete_prefix(self, prefix: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        container = await self._ready()
        names = [
            item.name
            async for item in container.list_blobs(
                name_starts_with=validate_storage_key(prefix) + "/"
            )
        ]
        for name in names:
            try:
                await container.delete_blob(name)
            except ResourceNotFoundError:
                pass
        return len(names)

    async def close(self) -> None:
        await self._service.close()


async def _blob_chunks(downloader: Any) -> AsyncIterator[bytes]:
    async for chunk in downloader.chunks():
        yield chunk


def build_store(settings: Settings) -> AttachmentStore:
    """The attachment store the settings choose (local by default)."""
    from helpdesk.settings import ConfigurationError

    if settings.attachment_storage == "azure":
        if settings.azure_storage_connection_string is None:
            raise ConfigurationError(
                "HELPDESK_AZURE_STORAGE_CONNECTION_STRING is required for azure storage"
            )
        return AzureBlobStore(
            settings.azure_storage_connection_string.get_secret_value(),
            settings.azure_storage_container,
        )
    return LocalEncryptedStore(settings.attachments_path)
