"""Encryption at rest: AES-256-GCM envelope encryption and keyed blind indexes.

Each record that owns PHI (a user, a ticket) has its own data key (DEK). The DEK is stored
wrapped (AES-GCM) by a key-encryption key (KEK) held outside the database; the KEK id is kept
beside the wrapped key so KEKs rotate. Every field ciphertext carries its DEK id, and its
associated data binds table, column, row id and key id, so swapping ciphertexts between rows
or columns fails to decrypt. Deleting a DEK makes every copy of its data unreadable
(crypto-shredding).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
_NONCE_BYTES = 12
_HEADER = struct.Struct(">B16s")  # version, data key id


class IntegrityError(Exception):
    """A ciphertext failed authentication: tampered, swapped, or its key is gone."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as stored: its id, the KEK that wraps it, and the wrapped bytes."""

    key_id: uuid.UUID
    kek_id: str
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class DataKey:
    """An unwrapped data key, held only in memory."""

    key_id: uuid.UUID
    material: bytes


class KeyRing:
    """Wraps and unwraps data keys with the configured key-encryption keys."""

    def __init__(self, current_kek_id: str, keks: dict[str, bytes]) -> None:
        if current_kek_id not in keks:
            raise ValueError("the current KEK id has no key")
        for kek in keks.values():
            if len(kek) != 32:
                raise ValueError("a KEK must be 32 bytes")
        self._current = current_kek_id
        self._keks = dict(keks)

    @property
    def current_kek_id(self) -> str:
        return self._current

    def new_data_key(self) -> tuple[DataKey, WrappedKey]:
        key_id = uuid.uuid4()
        material = AESGCM.generate_key(bit_length=256)
        return DataKey(key_id, material), self.wrap(DataKey(key_id, material))

    def wrap(self, key: DataKey) -> WrappedKey:
        nonce = os.urandom(_NONCE_BYTES)
        aad = b"dek|" + key.key_id.bytes + b"|" + self._current.encode()
        sealed = AESGCM(self._keks[self._current]).encrypt(nonce, key.material, aad)
        return WrappedKey(key.key_id, self._current, nonce + sealed)

    def unwrap(self, wrapped: WrappedKey) -> DataKey:
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            raise IntegrityError("data key is wrapped by an unknown key-encryption key")
        aad = b"dek|" + wrapped.key_id.bytes + b"|" + wrapped.kek_id.encode()
        try:
            material = AESGCM(kek).decrypt(
                wrapped.wrapped[:_NONCE_BYTES], wrapped.wrapped[_NONCE_BYTES:], aad
            )
        except InvalidTag as exc:
            raise IntegrityError("data key failed authentication") from exc
        return DataKey(wrapped.key_id, material)

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        """The same data key wrapped by the current KEK (KEK rotation)."""
        return self.wrap(self.unwrap(wrapped))

    # A KEK held elsewhere (helpdesk.keyvault) unwraps over the network: async callers use
    # these, which for the local KEK are the plain in-memory operations.
    async def unwrap_async(self, wrapped: WrappedKey) -> DataKey:
        return self.unwrap(wrapped)

    async def unwrap_many_async(self, wrapped: Iterable[WrappedKey]) -> dict[uuid.UUID, DataKey]:
        unique = {item.key_id: item for item in wrapped}
        return {key_id: self.unwrap(item) for key_id, item in unique.items()}

    def forget(self, key_id: uuid.UUID) -> None:
        """Drop any cached copy of a data key (it is being destroyed). Nothing to do here."""

    async def aclose(self) -> None:
        """Release connections to a remote KEK. Nothing to do here."""


def field_aad(table: str, column: str, row_id: uuid.UUID | str, key_id: uuid.UUID) -> bytes:
    """Associated data binding a field ciphertext to its place."""
    return f"{table}|{column}|{row_id}|{key_id}".encode()


def encrypt_field(
    key: DataKey, plaintext: str | bytes, *, table: str, column: str, row_id: uuid.UUID | str
) -> bytes:
    """AES-256-GCM ciphertext of one field: version, key id, nonce, sealed data."""
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key.material).encrypt(nonce, data, field_aad(table, column, row_id, key.key_id))
    return _HEADER.pack(FORMAT_VERSION, key.key_id.bytes) + nonce + sealed


def ciphertext_key_id(blob: bytes) -> uuid.UUID:
    """The data key id a ciphertext was made with."""
    if len(blob) < _HEADER.size + _NONCE_BYTES + 16:
        raise IntegrityError("ciphertext is truncated")
    version, key_bytes = _HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise IntegrityError("unknown ciphertext format")
    return uuid.UUID(bytes=key_bytes)


def decrypt_field_bytes(
    key: DataKey, blob: bytes, *, table: str, column: str, row_id: uuid.UUID | str
) -> bytes:
    key_id = ciphertext_key_id(blob)
    if key_id != key.key_id:
        raise IntegrityError("ciphertext was made with another data key")
    nonce = blob[_HEADER.size : _HEADER.size + _NONCE_BYTES]
    try:
        return AESGCM(key.material).decrypt(
            nonce, blob[_HEADER.size + _NONCE_BYTES :], field_aad(table, column, row_id, key_id)
        )
    except InvalidTag as exc:
        raise IntegrityError(f"{table}.{column} failed authentication") from exc


def decrypt_field(
    key: DataKey, blob: bytes, *, table: str, column: str, row_id: uuid.UUID | str
) -> str:
    return decrypt_field_bytes(key, blob, table=table, column=column, row_id=row_id).decode()


def normalise_email(email: str) -> str:
    """The canonical form of an email used for uniqueness and lookup."""
    return unicodedata.normalize("NFKC", email).strip().lower()


class BlindIndex:
    """Keyed HMAC-SHA256 digests for equality lookups over encrypted values."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, purpose: str, value: str) -> str:
        mac = hmac.new(self._key, purpose.encode() + b"\x00" + value.encode(), hashlib.sha256)
        return mac.hexdigest()

    def email(self, email: str) -> str:
        return self.digest("email", normalise_email(email))

    def search_token(self, token: str) -> str:
        return self.digest("search", token)[:32]


def sha256_hex(value: bytes | str) -> str:
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()
