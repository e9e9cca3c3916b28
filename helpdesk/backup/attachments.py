"""The attachment part: a tar stream of the store's objects exactly as stored (ciphertext
under each ticket's data key), named by storage key."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from typing import Any

from helpdesk.storage.store import AttachmentStore, ObjectMissing, validate_storage_key


def keys_digest(keys: list[str]) -> str:
    """SHA-256 of the sorted key list: the manifest's proof of which objects a backup holds."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


async def write_objects(
    store: AttachmentStore, keys: list[str], sink: Any, on_object: Any = None
) -> tuple[list[str], list[str], int]:
    """Copy every object into a tar stream on `sink` (a file-like with `write`).
    Returns (copied keys, missing keys, bytes copied). An object gone since the snapshot
    (its ticket was deleted meanwhile) is listed as missing, not an error."""
    copied: list[str] = []
    missing: list[str] = []
    total = 0
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for key in keys:
            try:
                data = await store.read_raw(key)
            except ObjectMissing:
                missing.append(key)
                continue
            info = tarfile.TarInfo(name=validate_storage_key(key))
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
            copied.append(key)
            total += len(data)
            if on_object is not None:
                on_object(len(data))
    return copied, missing, total


class IteratorReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def read_objects(chunks: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """(storage key, stored bytes) of each object of an attachment part, in order."""
    reader = io.BufferedReader(IteratorReader(chunks), buffer_size=1024 * 1024)
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            yield validate_storage_key(member.name), handle.read()
