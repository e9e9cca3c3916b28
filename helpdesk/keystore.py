"""Per-record data keys in the database, wrapped by the key-encryption key."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.crypto import DataKey, KeyRing, WrappedKey
from helpdesk.errors import Gone
from models.keys import DataKey as DataKeyRow


class KeyStore:
    """Creates, loads and destroys data keys. A key is only ever unwrapped from its row as read
    now, so a destroyed key is unusable by every process at once (crypto-shredding); a KEK
    provider's cache of unwrapped keys is looked up by the wrapped bytes of that row."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    async def create(self, session: AsyncSession) -> DataKey:
        key, wrapped = self.keyring.new_data_key()
        self.add(session, wrapped)
        await session.flush()
        return key

    def add(self, session: AsyncSession, wrapped: WrappedKey) -> None:
        """Store a key made beforehand with `keyring.new_data_key()` (the caller flushes)."""
        session.add(
            DataKeyRow(id=wrapped.key_id, kek_id=wrapped.kek_id, wrapped_key=wrapped.wrapped)
        )

    async def get(self, session: AsyncSession, key_id: uuid.UUID | None) -> DataKey:
        if key_id is None:
            raise Gone("this record's data was disposed of")
        row = await session.get(DataKeyRow, key_id)
        if row is None:
            raise Gone("this record's data was disposed of")
        return await self._unwrap(row)

    async def get_many(
        self, session: AsyncSession, key_ids: Iterable[uuid.UUID | None]
    ) -> dict[uuid.UUID, DataKey]:
        wanted = {key_id for key_id in key_ids if key_id is not None}
        if not wanted:
            return {}
        rows = await session.scalars(select(DataKeyRow).where(DataKeyRow.id.in_(wanted)))
        return await self.keyring.unwrap_many_async(
            WrappedKey(row.id, row.kek_id, row.wrapped_key) for row in rows
        )

    async def destroy(self, session: AsyncSession, key_id: uuid.UUID | None) -> None:
        if key_id is not None:
            await session.execute(delete(DataKeyRow).where(DataKeyRow.id == key_id))
            self.keyring.forget(key_id)

    async def rewrap_all(self, session: AsyncSession) -> int:
        """Re-wrap every data key under the current KEK (after a KEK rotation)."""
        count = 0
        for row in await session.scalars(select(DataKeyRow)):
            if row.kek_id != self.keyring.current_kek_id:
                fresh = self.keyring.wrap(await self._unwrap(row))
                row.kek_id, row.wrapped_key = fresh.kek_id, fresh.wrapped
                count += 1
        return count

    async def _unwrap(self, row: DataKeyRow) -> DataKey:
        return await self.keyring.unwrap_async(WrappedKey(row.id, row.kek_id, row.wrapped_key))
