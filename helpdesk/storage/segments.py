"""The stored format of attachment bytes: streamed AES-256-GCM under the ticket's data key.

Stored object format (version 1)::

    header   = b"HDAT" | version (1 byte) | data key id (16) | segment size (4, big-endian)
    segment  = nonce (12) | AES-GCM(plaintext segment) | tag (16)

Plaintext is cut into fixed segments (64 KiB; the last one shorter, possibly empty), each
sealed with a fresh random nonce and associated data binding the header, the attachment id,
the segment index and a final-segment flag. So a flipped byte, a segment moved, dropped or
copied from another attachment, or an object cut short at a segment boundary all fail
authentication (`helpdesk.crypto.IntegrityError`) instead of yielding wrong bytes. Every
segment is authenticated before any of its bytes are handed on.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import AsyncIterable, AsyncIterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpdesk.crypto import DataKey, IntegrityError

MAGIC = b"HDAT"
FORMAT_VERSION = 1
SEGMENT_BYTES = 64 * 1024
_HEADER = struct.Struct(">4sB16sI")
_NONCE = 12
_TAG = 16
_SEGMENT_AAD = struct.Struct(">QB")


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
