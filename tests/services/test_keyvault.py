"""The Azure Key Vault KEK provider against a loopback fake Key Vault.

The fake speaks Key Vault's REST protocol (api-version 7.4) over real HTTPS on 127.0.0.1
with a self-signed certificate made here: ``GET /keys/{name}`` (public JWK of the current
version), ``POST /keys/{name}/{version}/wrapkey`` and ``/unwrapkey`` (RSA-OAEP-256 with RSA
keys it alone holds). It checks the bearer token, the api-version and the algorithm, and
records every answer it sends, so a test can prove that no private key material ever left it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from helpdesk.crypto import (
    IntegrityError,
    KeyRing,
    WrappedKey,
    decrypt_field,
    encrypt_field,
)
from helpdesk.errors import Gone
from helpdesk.keystore import KeyStore
from helpdesk.keyvault import (
    API_VERSION,
    KeyVaultError,
    KeyVaultKeyRing,
    b64url_decode,
    b64url_encode,
    keyring_from_settings,
)
from helpdesk.runtime import Runtime, build_keyring
from helpdesk.services import users
from helpdesk.settings import Settings
from models.keys import DataKey as DataKeyRow
from models.user import User
from tests.conftest import make_settings

TOKEN = "token-of-the-managed-identity"
KEY_NAME = "helpdesk-kek"
OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


# --- the fake Key Vault ------------------------------------------------------------------
class FakeKeyVault:
    """Key versions with RSA private keys that never leave this object."""

    def __init__(self) -> None:
        self.versions: dict[str, rsa.RSAPrivateKey] = {}
        self.current = ""
        self.requests: list[tuple[str, str]] = []
        self.answers: list[str] = []
        self.url = ""
        self.rotate()

    def rotate(self) -> str:
        version = uuid.uuid4().hex
        self.versions[version] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.current = version
        return version

    def kid(self, version: str) -> str:
        return f"{self.url}/keys/{KEY_NAME}/{version}"

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        self.requests.append((method, parts.path))
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": {"code": "Unauthorized", "message": "AKV10000: bad token"}}
        if parse_qs(parts.query).get("api-version") != [API_VERSION]:
            return 400, {"error": {"code": "BadParameter", "message": "api-version"}}
        segments = parts.path.strip("/").split("/")
        if segments[:2] != ["keys", KEY_NAME]:
            return 404, {"error": {"code": "KeyNotFound", "message": "no such key"}}
        if method == "GET" and len(segments) in (2, 3):
            version = segments[2] if len(segments) == 3 else self.current
            if version not in self.versions:
                return 404, {"error": {"code": "KeyNotFound", "message": "no such version"}}
            numbers = self.versions[version].public_key().public_numbers()
            jwk = {
                "kid": self.kid(version),
                "kty": "RSA-HSM",
                "key_ops": ["wrapKey", "unwrapKey"],
                "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": b64url_encode(numbers.e.to_bytes(3, "big")),
            }
            return 200, {"key": jwk, "attributes": {"enabled": True}}
        if method == "POST" and len(segments) == 4 and segments[3] in ("wrapkey", "unwrapkey"):
            version, operation = segments[2], segments[3]
            if version not in self.versions:
                return 404, {"error": {"code": "KeyNotFound", "message": "no such version"}}
            request = json.loads(body)
            if request.get("alg") != "RSA-OAEP-256":
                return 400, {"error": {"code": "BadParameter", "message": "alg"}}
            private = self.versions[version]
            value = b64url_decode(request["value"])
            try:
                if operation == "wrapkey":
                    result = private.public_key().encrypt(value, OAEP)
                else:
                    result = private.decrypt(value, OAEP)
            except ValueError:
                return 400, {"error": {"code": "BadParameter", "message": "decryption failed"}}
            return 200, {"kid": self.kid(version), "value": b64url_encode(result)}
        return 405, {"error": {"code": "MethodNotAllowed", "message": method}}


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-vault.localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "vault.pem", tmp / "vault.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Vault:
    fake: FakeKeyVault
    url: str
    ca: str


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    fake = FakeKeyVault()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, payload = fake.handle(
                self.command, self.path, self.headers, self.rfile.read(length)
            )
            data = json.dumps(payload).encode()
            fake.answers.append(data.decode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    cert, key = _self_signed(tmp_path_factory.mktemp("vault"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Vault(fake, fake.url, str(cert))
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class AccessToken:
    token: str
    expires_on: int


class StaticCredential:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://vault.azure.net/.default",)
        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)


class BrokenCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise RuntimeError("ManagedIdentityCredential authentication unavailable")


def make_ring(vault: Vault, **options: Any) -> KeyVaultKeyRing:
    credential = options.pop("credential", StaticCredential())
    return KeyVaultKeyRing(vault.url, KEY_NAME, credential, verify=vault.ca, **options)


# --- tests -------------------------------------------------------------------------------
def test_seal_and_unseal_a_field_through_key_vault(vault: Vault) -> None:
    ring = make_ring(vault)
    key, wrapped = ring.new_data_key()
    assert wrapped.kek_id == f"akv:{KEY_NAME}/{vault.fake.current}"
    assert len(wrapped.kek_id) <= 64  # fits data_keys.kek_id
    blob = encrypt_field(key, "canary PHI 4711", table="t", column="c", row_id="r1")

    # Another process: nothing cached, so the data key comes back from the vault's unwrapkey.
    other = make_ring(vault)
    unwrapped = other.unwrap(wrapped)
    assert other.calls["unwrapkey"] == 1
    assert decrypt_field(unwrapped, blob, table="t", column="c", row_id="r1") == "canary PHI 4711"
    # Wrapping was local, with the public half only: no wrapkey call.
    assert ring.calls["wrapkey"] == 0 and ring.calls["get"] == 1


def test_the_kek_never_reaches_the_process(vault: Vault) -> None:
    start = len(vault.fake.answers)
    ring = make_ring(vault)
    key, wrapped = ring.new_data_key()
    make_ring(vault).unwrap(wrapped)
    answers = [json.loads(a) for a in vault.fake.answers[start:]]
    # What the provider received: a public JWK (n, e) and the unwrapped data key, nothing else.
    for answer in answers:
        jwk = answer.get("key", {})
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    # No private key object is reachable from the ring (the fake vault holds its own).
    seen: set[int] = set()
    stack: list[object] = [ring]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        assert not isinstance(item, rsa.RSAPrivateKey)
        stack.extend(gc.get_referents(item))
    # And the wrapped bytes never carry the data key in the clear.
    assert key.material not in wrapped.wrapped


def test_wrong_or_missing_token_is_a_clear_error(vault: Vault) -> None:
    _, wrapped = make_ring(vault).new_data_key()
    with pytest.raises(KeyVaultError, match=r"refused unwrapkey .*401 Unauthorized.*Crypto User"):
        make_ring(vault, credential=StaticCredential("stolen-or-expired")).unwrap(wrapped)
    with pytest.raises(KeyVaultError, match="no token for Key Vault from the managed identity"):
        make_ring(vault, credential=BrokenCredential()).unwrap(wrapped)
    # Without a token at all the fake (like Key Vault) answers 401.
    url = f"{vault.url}/keys/{KEY_NAME}?api-version={API_VERSION}"
    assert httpx.get(url, verify=ssl.create_default_context(cafile=vault.ca)).status_code == 401
    # The fake enforces the api-version too, so the provider's calls above were checked.
    bad = httpx.get(
        f"{vault.url}/keys/{KEY_NAME}?api-version=2016-10-01",
        headers={"Authorization": f"Bearer {TOKEN}"},
        verify=ssl.create_default_context(cafile=vault.ca),
    )
    assert bad.status_code == 400


def test_rotation_old_versions_still_unwrap_and_rewrap_moves_keys(vault: Vault) -> None:
    ring = make_ring(vault, refresh_seconds=0.05)
    key_old, wrapped_old = ring.new_data_key()
    old_version = vault.fake.current
    vault.fake.rotate()
    time.sleep(0.1)
    key_new, wrapped_new = ring.new_data_key()
    assert wrapped_new.kek_id != wrapped_old.kek_id
    assert wrapped_new.kek_id.endswith(vault.fake.current)
    assert ring.current_kek_id == wrapped_new.kek_id

    fresh = make_ring(vault)
    assert fresh.unwrap(wrapped_old).material == key_old.material
    assert fresh.unwrap(wrapped_new).material == key_new.material
    assert ("POST", f"/keys/{KEY_NAME}/{old_version}/unwrapkey") in vault.fake.requests

    rewrapped = fresh.rewrap(wrapped_old)
    assert rewrapped.kek_id == wrapped_new.kek_id
    assert make_ring(vault).unwrap(rewrapped).material == key_old.material


def test_remote_wrap_calls_wrapkey_and_interoperates(vault: Vault) -> None:
    ring = make_ring(vault, local_wrap=False)
    key, wrapped = ring.new_data_key()
    assert ring.calls["wrapkey"] == 1
    assert make_ring(vault).unwrap(wrapped).material == key.material


def test_tampered_or_moved_wrapped_keys_fail(vault: Vault) -> None:
    ring = make_ring(vault, cache_seconds=0)
    _, wrapped = ring.new_data_key()
    flipped = bytes([wrapped.wrapped[0] ^ 1]) + wrapped.wrapped[1:]
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey(wrapped.key_id, wrapped.kek_id, flipped))
    # The wrapped bytes of one data key copied onto another key id.
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey(uuid.uuid4(), wrapped.kek_id, wrapped.wrapped))
    with pytest.raises(IntegrityError, match="unknown key-encryption key"):
        ring.unwrap(WrappedKey(wrapped.key_id, "akv:other-key/abc", wrapped.wrapped))
    with pytest.raises(IntegrityError, match="unknown key-encryption key"):
        ring.unwrap(WrappedKey(wrapped.key_id, "kek-1", wrapped.wrapped))


def test_unwrapped_keys_are_cached_briefly_and_forgotten(vault: Vault) -> None:
    _, wrapped = make_ring(vault).new_data_key()
    ring = make_ring(vault, cache_seconds=0.2)
    ring.unwrap(wrapped)
    ring.unwrap(wrapped)
    assert ring.calls["unwrapkey"] == 1
    time.sleep(0.3)
    ring.unwrap(wrapped)
    assert ring.calls["unwrapkey"] == 2
    ring.forget(wrapped.key_id)
    ring.unwrap(wrapped)
    assert ring.calls["unwrapkey"] == 3
    uncached = make_ring(vault, cache_seconds=0)
    uncached.unwrap(wrapped)
    uncached.unwrap(wrapped)
    assert uncached.calls["unwrapkey"] == 2


async def test_async_unwrap_of_many_keys(vault: Vault) -> None:
    ring = make_ring(vault)
    made = [ring.new_data_key() for _ in range(6)]
    reader = make_ring(vault)
    keys = await reader.unwrap_many_async([w for _, w in made] + [made[0][1]])
    assert {k: v.material for k, v in keys.items()} == {k.key_id: k.material for k, _ in made}
    assert reader.calls["unwrapkey"] == 6
    await ring.aclose()
    await reader.aclose()


def test_a_hung_vault_ends_in_an_error_within_the_deadline() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        ring = KeyVaultKeyRing(
            f"https://127.0.0.1:{port}", KEY_NAME, StaticCredential(), timeout_seconds=0.3
        )
        started = time.monotonic()
        with pytest.raises(KeyVaultError, match="unreachable"):
            ring.new_data_key()
        assert time.monotonic() - started < 3
    finally:
        listener.close()


def test_local_kek_keys_still_unwrap_after_moving_to_key_vault(vault: Vault) -> None:
    local = KeyRing("kek-1", {"kek-1": b"\x07" * 32})
    key, wrapped_local = local.new_data_key()
    ring = make_ring(vault, legacy=local)
    assert ring.unwrap(wrapped_local).material == key.material
    moved = ring.rewrap(wrapped_local)
    assert moved.kek_id.startswith("akv:")
    assert make_ring(vault).unwrap(moved).material == key.material
    with pytest.raises(IntegrityError):
        make_ring(vault).unwrap(wrapped_local)  # no legacy KEK configured


def test_settings_select_the_provider(vault: Vault, tmp_path: Path) -> None:
    default = make_settings(tmp_path)
    assert default.kek_provider == "local"
    assert type(build_keyring(default)) is KeyRing

    chosen = make_settings(
        tmp_path,
        kek_provider="azure-keyvault",
        azure_key_vault_url=vault.url,
        azure_key_cache_seconds=0,
    )
    ring = keyring_from_settings(
        chosen, credential=StaticCredential(), verify=ssl.create_default_context(cafile=vault.ca)
    )
    _, wrapped = ring.new_data_key()
    assert ring.unwrap(wrapped).key_id == wrapped.key_id

    # Production with the vault needs no HELPDESK_KEK; without a URL it refuses to start.
    secrets = {
        "jwt_secret": "j" * 40,
        "blind_index_key": "b" * 40,
        "audit_key": "a" * 40,
        "command_key": "m" * 40,
        "payload_codec_key": base64.b64encode(b"p" * 32).decode(),
    }
    prod = Settings(
        environment="production",
        email_backend="smtp",
        var_dir=tmp_path,
        kek_provider="azure-keyvault",
        azure_key_vault_url=vault.url,
        **secrets,  # type: ignore[arg-type]
    )
    assert prod.kek is None and prod.key_encryption_keys() == {}
    with pytest.raises(ValueError, match="HELPDESK_AZURE_KEY_VAULT_URL"):
        Settings(
            environment="production",
            var_dir=tmp_path,
            kek_provider="azure-keyvault",
            **secrets,  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="HELPDESK_KEK"):
        Settings(environment="production", var_dir=tmp_path, **secrets)  # type: ignore[arg-type]


async def test_a_user_record_through_key_vault_and_crypto_shredding(
    vault: Vault, runtime: Runtime
) -> None:
    runtime.keys = KeyStore(make_ring(vault))
    async with runtime.database.transaction() as session:
        user = await users.create_user(
            session,
            runtime,
            email="patient@example.org",
            password="x",
            full_name="Canary Patient",
            password_hash="not-a-real-hash",
        )
        user_id = user.id
    async with runtime.database.read() as session:
        row = await session.get(DataKeyRow, user.data_key_id)
        assert row is not None and row.kek_id.startswith(f"akv:{KEY_NAME}/")

    # A second process (its own ring, empty cache) reads the record through unwrapkey.
    reader = make_ring(vault)
    runtime.keys = KeyStore(reader)
    async with runtime.database.read() as session:
        loaded = await session.get(User, user_id)
        assert loaded is not None
        view = await users.view(session, runtime, loaded)
    assert view.full_name == "Canary Patient"
    assert reader.calls["unwrapkey"] == 1


async def test_crypto_shredding_beats_the_cache(vault: Vault, runtime: Runtime) -> None:
    ring = make_ring(vault)
    runtime.keys = KeyStore(ring)
    async with runtime.database.transaction() as session:
        key = await runtime.keys.create(session)
    async with runtime.database.read() as session:
        assert (await runtime.keys.get(session, key.key_id)).material == key.material
        assert len(ring._cache) == 1  # cached now
    async with runtime.database.transaction() as session:
        await runtime.keys.destroy(session, key.key_id)
    async with runtime.database.read() as session:
        with pytest.raises(Gone):
            await runtime.keys.get(session, key.key_id)
        assert await runtime.keys.get_many(session, [key.key_id]) == {}
    # The local copy is dropped too; other processes cannot present the wrapped bytes of a
    # row that no longer exists, so their caches cannot serve it either.
    assert len(ring._cache) == 0


async def test_rewrap_all_moves_local_data_keys_into_key_vault(
    vault: Vault, runtime: Runtime
) -> None:
    local = runtime.keys.keyring
    async with runtime.database.transaction() as session:
        key = await runtime.keys.create(session)
    runtime.keys = KeyStore(make_ring(vault, legacy=local))
    async with runtime.database.transaction() as session:
        assert await runtime.keys.rewrap_all(session) == 1
        assert await runtime.keys.rewrap_all(session) == 0
    runtime.keys = KeyStore(make_ring(vault))  # no local KEK any more
    async with runtime.database.read() as session:
        row = await session.get(DataKeyRow, key.key_id)
        assert row is not None and row.kek_id.startswith("akv:")
        assert (await runtime.keys.get(session, key.key_id)).material == key.material


async def test_keys_rewrap_command_after_a_local_kek_rotation(settings: Settings) -> None:
    from helpdesk.cli import rewrap_keys
    from helpdesk.runtime import build_runtime

    old, new = base64.b64encode(b"\x01" * 32).decode(), base64.b64encode(b"\x02" * 32).decode()
    before = settings.model_copy(update={"kek": SecretStr(old), "kek_id": "k1"})
    runtime = build_runtime(before)
    try:
        async with runtime.database.transaction() as session:
            key = await runtime.keys.create(session)
    finally:
        await runtime.close()
    rotated = settings.model_copy(
        update={"kek": SecretStr(new), "kek_id": "k2", "previous_keks": [f"k1:{old}"]}
    )
    assert await rewrap_keys(rotated) == (1, "k2")
    only_new = settings.model_copy(update={"kek": SecretStr(new), "kek_id": "k2"})
    runtime = build_runtime(only_new)
    try:
        async with runtime.database.read() as session:
            assert (await runtime.keys.get(session, key.key_id)).material == key.material
    finally:
        await runtime.close()
