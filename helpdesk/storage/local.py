"""The local-filesystem attachment store: ciphertext files under a directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpdesk.storage.store import AttachmentStore, ObjectMissing, validate_storage_key

# Plaintext buffered per filesystem write (fewer thread hops).
_LOCAL_WRITE_BYTES = 1024 * 1024


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
