"""The attachment stores: streamed AES-256-GCM segments under the ticket's data key, on the
local filesystem and in Azure Blob Storage (a real Azurite on loopback)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from helpdesk.crypto import DataKey, IntegrityError
from helpdesk.storage.azure_blob import AzureBlobStore
from helpdesk.storage.local import LocalEncryptedStore
from helpdesk.storage.segments import SEGMENT_BYTES
from helpdesk.storage.store import AttachmentStore, ObjectMissing, storage_key_for, ticket_prefix

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def new_key() -> DataKey:
    return DataKey(uuid.uuid4(), os.urandom(32))


async def chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: AttachmentStore, key: str, dk: DataKey, aid: uuid.UUID) -> bytes:
    return b"".join([c async for c in await store.get(key, key=dk, attachment_id=aid)])


@pytest.fixture
def local_store(tmp_path: Path) -> LocalEncryptedStore:
    return LocalEncryptedStore(tmp_path / "attachments")


# --- local store: format and tamper evidence -------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 5 * SEGMENT_BYTES + 7]
)
async def test_round_trip_sizes(local_store: LocalEncryptedStore, size: int) -> None:
    data = os.urandom(size)
    dk, aid = new_key(), uuid.uuid4()
    key = storage_key_for(uuid.uuid4(), aid)
    stored = await local_store.put(key, chunks(data), key=dk, attachment_id=aid)
    assert stored.size == size
    import hashlib

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(local_store, key, dk, aid) == data
    raw = await local_store.read_raw(key)
    assert len(raw) == stored.stored_bytes > size
    # The plaintext is not in the file. (A 1-byte or 15-byte plaintext may turn up inside
    # random-looking ciphertext by chance, so only sizes where a match would mean a leak.)
    assert size < 16 or data not in raw


async def test_stored_pdf_is_ciphertext_with_private_file_mode(
    local_store: LocalEncryptedStore,
) -> None:
    dk, aid = new_key(), uuid.uuid4()
    key = storage_key_for(uuid.uuid4(), aid)
    await local_store.put(key, chunks(PDF), key=dk, attachment_id=aid)
    raw = await local_store.read_raw(key)
    assert not raw.startswith(b"%PDF")
    assert b"Catalog" not in raw
    (path,) = local_store.files()
    assert path.stat().st_mode & 0o777 == 0o600


async def _stored(store: LocalEncryptedStore, size: int) -> tuple[str, DataKey, uuid.UUID, Path]:
    dk, aid = new_key(), uuid.uuid4()
    key = storage_key_for(uuid.uuid4(), aid)
    await store.put(key, chunks(os.urandom(size)), key=dk, attachment_id=aid)
    return key, dk, aid, store.root / key


@pytest.mark.parametrize("where", [0, 5, 25, 40, SEGMENT_BYTES + 30, -1])
async def test_flipped_byte_anywhere_is_detected(
    local_store: LocalEncryptedStore, where: int
) -> None:
    key, dk, aid, path = await _stored(local_store, 3 * SEGMENT_BYTES)
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        await read_all(local_store, key, dk, aid)


async def test_truncation_reordering_and_splicing_are_detected(
    local_store: LocalEncryptedStore,
) -> None:
    key, dk, aid, path = await _stored(local_store, 3 * SEGMENT_BYTES + 100)
    raw = path.read_bytes()
    header, sealed = 25, SEGMENT_BYTES + 28
    segments = [raw[header + i * sealed : header + (i + 1) * sealed] for i in range(4)]
    variants = {
        "cut at a segment boundary": raw[: header + 2 * sealed],
        "cut mid-segment": raw[: header + sealed + 100],
        "header only": raw[:header],
        "segments swapped": raw[:header] + segments[1] + segments[0] + b"".join(segments[2:]),
        "segment repeated": raw[:header] + segments[0] + b"".join(segments),
        "bytes appended": raw + b"\0" * 40,
    }
    for name, variant in variants.items():
        path.write_bytes(variant)
        with pytest.raises(IntegrityError):
            await read_all(local_store, key, dk, aid)
            pytest.fail(f"not detected: {name}")


async def test_wrong_key_or_other_attachment_id_fails(local_store: LocalEncryptedStore) -> None:
    key, dk, aid, _ = await _stored(local_store, 1000)
    with pytest.raises(IntegrityError, match="another data key"):
        await read_all(local_store, key, new_key(), aid)
    same_id_other_material = DataKey(dk.key_id, os.urandom(32))
    with pytest.raises(IntegrityError):
        await read_all(local_store, key, same_id_other_material, aid)
    # A copy of one attachment's object under another attachment's key fails too.
    with pytest.raises(IntegrityError):
        await read_all(local_store, key, dk, uuid.uuid4())


async def test_aborted_upload_leaves_nothing(local_store: LocalEncryptedStore) -> None:
    class ClientWentAway(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(3 * 1024 * 1024)
        raise ClientWentAway

    dk, aid = new_key(), uuid.uuid4()
    key = storage_key_for(uuid.uuid4(), aid)
    with pytest.raises(ClientWentAway):
        await local_store.put(key, broken(), key=dk, attachment_id=aid)
    assert local_store.files() == []
    with pytest.raises(ObjectMissing):
        await local_store.get(key, key=dk, attachment_id=aid)


async def test_delete_and_delete_prefix(local_store: LocalEncryptedStore) -> None:
    dk, ticket = new_key(), uuid.uuid4()
    keys = []
    for _ in range(3):
        aid = uuid.uuid4()
        keys.append(storage_key_for(ticket, aid))
        await local_store.put(keys[-1], chunks(b"hello"), key=dk, attachment_id=aid)
    await local_store.delete(keys[0])
    await local_store.delete(keys[0])  # idempotent
    assert not await local_store.exists(keys[0])
    assert await local_store.exists(keys[1])
    assert await local_store.delete_prefix(ticket_prefix(ticket)) == 2
    assert local_store.files() == []
    assert await local_store.delete_prefix(ticket_prefix(ticket)) == 0


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../b", "/abs", "a//b", "a.b", "", "a/"])
async def test_storage_keys_cannot_escape(local_store: LocalEncryptedStore, bad: str) -> None:
    with pytest.raises(ValueError):
        await local_store.put(bad, chunks(b"x"), key=new_key(), attachment_id=uuid.uuid4())


# --- Azure Blob Storage against Azurite ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    """A real Azurite blob service on loopback (in-memory); its connection string."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: the Azure Blob store tests need Azurite")
    if not AZURITE.exists():
        pytest.fail("Azurite is not installed: run `make test` (scripts/install-azurite.sh)")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="azurite-")
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail("Azurite exited at start-up")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Azurite did not open its port in time")
                time.sleep(0.2)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest_asyncio.fixture
async def azure_store(azurite: str) -> AsyncIterator[AzureBlobStore]:
    store = AzureBlobStore(azurite, f"t{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("size", [0, 1000, 9 * 1024 * 1024 + 5])  # the last: 3 staged blocks
async def test_azure_round_trip(azure_store: AzureBlobStore, size: int) -> None:
    data = os.urandom(size - len(PDF)) if size > len(PDF) else b""
    data = PDF + data if size else b""
    dk, aid = new_key(), uuid.uuid4()
    key = storage_key_for(uuid.uuid4(), aid)
    stored = await azure_store.put(key, chunks(data, 256 * 1024), key=dk, attachment_id=aid)
    assert stored.size == len(data)
    assert await read_all(azure_store, key, dk, aid) == data
    raw = await azure_store.read_raw(key)
    assert len(raw) == stored.stored_bytes
    assert not raw.startswith(b"%PDF")


async def test_azure_tamper_delete_and_abort(azure_store: AzureBlobStore) -> None:
    dk, ticket = new_key(), uuid.uuid4()
    aid = uuid.uuid4()
    key = storage_key_for(ticket, aid)
    await azure_store.put(key, chunks(PDF * 100), key=dk, attachment_id=aid)
    # Someone with access to the container flips a byte: detected, never served.
    raw = bytearray(await azure_store.read_raw(key))
    raw[100] ^= 0x80
    blob = (await azure_store._ready()).get_blob_client(key)
    await blob.upload_blob(bytes(raw), overwrite=True)
    with pytest.raises(IntegrityError):
        await read_all(azure_store, key, dk, aid)

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(5 * 1024 * 1024)  # enough to stage a block first
        raise ConnectionResetError

    other = storage_key_for(ticket, uuid.uuid4())
    with pytest.raises(ConnectionResetError):
        await azure_store.put(other, broken(), key=dk, attachment_id=uuid.uuid4())
    assert not await azure_store.exists(other)  # staged blocks were never committed

    assert await azure_store.exists(key)
    assert await azure_store.delete_prefix(ticket_prefix(ticket)) == 1
    assert not await azure_store.exists(key)
    await azure_store.delete(key)  # idempotent
    with pytest.raises(ObjectMissing):
        await azure_store.get(key, key=dk, attachment_id=aid)
