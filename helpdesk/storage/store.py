"""The attachment store's interface: storage keys, and `AttachmentStore`, which encrypts
on `put` and decrypts on `get` while its backends move opaque ciphertext only."""

from __future__ import annotations

import hashlib
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from helpdesk.crypto import DataKey
from helpdesk.storage.segments import decrypt_stream, encrypt_stream

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class ObjectMissing(Exception):
    """No stored object under this key (never stored, deleted, or destroyed as infected)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What `put` stored: the plaintext's size and SHA-256, and the bytes at rest."""

    size: int
    sha256: str
    stored_bytes: int


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
