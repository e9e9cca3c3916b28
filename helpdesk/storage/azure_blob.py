"""The Azure Blob Storage attachment store: ciphertext as block blobs in one container.

The azure SDK is imported inside the methods on purpose: it is heavy (~0.7 s) and needed
only with HELPDESK_ATTACHMENT_STORAGE=azure, while the API, the worker and the backup
commands import this module (`helpdesk.storage.configured`)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

from helpdesk.storage.store import AttachmentStore, ObjectMissing, validate_storage_key

# Ciphertext buffered per staged block (fewer requests).
_BLOB_BLOCK_BYTES = 4 * 1024 * 1024


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
