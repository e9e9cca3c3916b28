"""Azure Key Vault as the key-encryption key (KEK) provider.

The KEK is an RSA key (RSA-HSM in a Premium vault) that never leaves the vault: a data key
is wrapped with RSA-OAEP-256 and only Key Vault can unwrap it (``POST
{vault}/keys/{name}/{version}/unwrapkey``), authorised by a bearer token of the process's
managed identity (role "Key Vault Crypto User" on that key, nothing else).

Why the REST calls are made here with httpx rather than through ``azure-keyvault-keys``'
``CryptographyClient``: ``KeyRing`` is called both from synchronous code and on async hot
paths, so the provider needs one small client with a sync and an async face, an explicit
deadline on every call (a hung vault must end in 503, not a stuck request), no
challenge-auth round trip per client, and errors that say which role is missing. The wire
format is Key Vault's REST API (api-version 7.4); tokens still come from ``azure-identity``.

Hot paths:

* Wrapping (every new ticket or user makes a data key) is a public-key operation. By default
  it is done in-process with the public half of the current key version (fetched by ``GET
  {vault}/keys/{name}`` and refreshed every ``refresh_seconds``, so a rotated version is used
  within minutes), exactly what Key Vault's own SDK does for RSA keys it can read. With
  ``local_wrap=False`` every wrap is a ``wrapkey`` call instead.
* Unwrapping needs the vault. Unwrapped data keys are kept in a small in-memory LRU cache for
  ``cache_seconds``. Its entries are looked up by the *wrapped* bytes, which a caller only has
  after reading the data key's row from the database; so deleting that row (crypto-shredding)
  makes the data unreadable in every process at once, cache or not, and ``forget`` also drops
  the local copy.

Wrapped keys are tagged ``akv:<key name>/<key version>``: the version part of the key's
``kid`` (the vault's host is configuration, so a vault restored elsewhere keeps working, and
the tag fits the 64-character ``data_keys.kek_id`` column). Old versions keep unwrapping after
a rotation; ``KeyStore.rewrap_all`` moves data keys to the current version. The wrapped
plaintext is the data key's id followed by its 32 key bytes, so a wrapped key copied onto
another row fails to unwrap.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from helpdesk.crypto import DataKey, IntegrityError, KeyRing, WrappedKey
from helpdesk.errors import Unavailable
from helpdesk.settings import Settings

API_VERSION = "7.4"
SCOPE = "https://vault.azure.net/.default"
ALGORITHM = "RSA-OAEP-256"
KEK_ID_PREFIX = "akv:"
# "akv:" + name + "/" + 32 hex digits must fit data_keys.kek_id (String(64)).
MAX_KEY_NAME_LENGTH = 64 - len(KEK_ID_PREFIX) - 1 - 32
_DATA_KEY_BYTES = 32
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
_TOKEN_MARGIN_SECONDS = 120.0


class KeyVaultError(Unavailable):
    """Key Vault refused or could not answer; the message names the cause, never a key."""

    code = "key_vault_unavailable"


class TokenCredential(Protocol):
    """What ``azure-identity`` credentials offer: ``get_token(scope)`` → ``.token``,
    ``.expires_on`` (epoch seconds)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def kek_tag(key_name: str, version: str) -> str:
    return f"{KEK_ID_PREFIX}{key_name}/{version}"


def parse_kid(kid: str) -> tuple[str, str]:
    """(name, version) of a key id ``https://<vault>/keys/<name>/<version>``."""
    parts = urlsplit(kid).path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "keys" or not parts[1] or not parts[2]:
        raise KeyVaultError(f"Key Vault answered an unexpected key id: {kid!r}")
    return parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class _CurrentKey:
    tag: str
    version: str
    public: rsa.RSAPublicKey | None
    fetched_at: float


class _UnwrapCache:
    """A bounded LRU of unwrapped data keys, each kept for at most `ttl` seconds."""

    def __init__(self, ttl: float, size: int) -> None:
        self._ttl = ttl
        self._size = size
        self._items: OrderedDict[tuple[str, bytes], tuple[float, DataKey]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, wrapped: WrappedKey) -> DataKey | None:
        if self._ttl <= 0:
            return None
        entry_key = (wrapped.kek_id, wrapped.wrapped)
        with self._lock:
            entry = self._items.get(entry_key)
            if entry is None:
                return None
            if entry[0] < time.monotonic() or entry[1].key_id != wrapped.key_id:
                del self._items[entry_key]
                return None
            self._items.move_to_end(entry_key)
            return entry[1]

    def put(self, wrapped: WrappedKey, key: DataKey) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return
        with self._lock:
            self._items[(wrapped.kek_id, wrapped.wrapped)] = (time.monotonic() + self._ttl, key)
            self._items.move_to_end((wrapped.kek_id, wrapped.wrapped))
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def forget(self, key_id: uuid.UUID) -> None:
        with self._lock:
            for entry_key in [k for k, v in self._items.items() if v[1].key_id == key_id]:
                del self._items[entry_key]

    def __len__(self) -> int:
        return len(self._items)


class KeyVaultKeyRing(KeyRing):
    """A `KeyRing` whose KEK is a Key Vault RSA key (see the module docstring)."""

    def __init__(
        self,
        vault_url: str,
        key_name: str,
        credential: TokenCredential,
        *,
        verify: ssl.SSLContext | str | bool = True,
        local_wrap: bool = True,
        cache_seconds: float = 300.0,
        cache_size: int = 10_000,
        refresh_seconds: float = 300.0,
        timeout_seconds: float = 5.0,
        max_concurrent_unwraps: int = 16,
        legacy: KeyRing | None = None,
    ) -> None:
        parts = urlsplit(vault_url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("the Key Vault URL must be https://<vault>.vault.azure.net")
        if not key_name or len(key_name) > MAX_KEY_NAME_LENGTH or "/" in key_name:
            raise ValueError(
                f"the Key Vault key name must be 1-{MAX_KEY_NAME_LENGTH} characters, no '/'"
            )
        # Deliberately no super().__init__: this ring holds no key material.
        self._vault = f"{parts.scheme}://{parts.netloc}"
        self._name = key_name
        self._credential = credential
        self._local_wrap = local_wrap
        self._refresh_seconds = refresh_seconds
        self._legacy = legacy
        self._cache = _UnwrapCache(cache_seconds, cache_size)
        self._latest: _CurrentKey | None = None
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()
        self._key_lock = threading.Lock()
        if isinstance(verify, str):  # a CA bundle (private CA, or a test's own certificate)
            verify = ssl.create_default_context(cafile=verify)
        timeout = httpx.Timeout(timeout_seconds)
        self._sync = httpx.Client(verify=verify, timeout=timeout, follow_redirects=False)
        self._async = httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=False)
        self._unwrap_slots = asyncio.Semaphore(max_concurrent_unwraps)
        self.calls: dict[str, int] = {"get": 0, "wrapkey": 0, "unwrapkey": 0}

    # --- KeyRing interface ----------------------------------------------------------------
    @property
    def current_kek_id(self) -> str:
        return self._current_key().tag

    def wrap(self, key: DataKey) -> WrappedKey:
        current = self._current_key()
        plaintext = key.key_id.bytes + key.material
        if self._local_wrap and current.public is not None:
            wrapped = current.public.encrypt(plaintext, _OAEP)
        else:
            answer = self._call_sync("wrapkey", current.version, plaintext)
            wrapped = answer
        return WrappedKey(key.key_id, current.tag, wrapped)

    def unwrap(self, wrapped: WrappedKey) -> DataKey:
        if not wrapped.kek_id.startswith(KEK_ID_PREFIX):
            return self._unwrap_legacy(wrapped)
        cached = self._cache.get(wrapped)
        if cached is not None:
            return cached
        plaintext = self._call_sync("unwrapkey", self._version_of(wrapped), wrapped.wrapped)
        return self._accept(wrapped, plaintext)

    async def unwrap_async(self, wrapped: WrappedKey) -> DataKey:
        if not wrapped.kek_id.startswith(KEK_ID_PREFIX):
            return self._unwrap_legacy(wrapped)
        cached = self._cache.get(wrapped)
        if cached is not None:
            return cached
        async with self._unwrap_slots:
            plaintext = await self._call_async(
                "unwrapkey", self._version_of(wrapped), wrapped.wrapped
            )
        return self._accept(wrapped, plaintext)

    async def unwrap_many_async(self, wrapped: Iterable[WrappedKey]) -> dict[uuid.UUID, DataKey]:
        unique = {item.key_id: item for item in wrapped}
        keys = await asyncio.gather(*(self.unwrap_async(item) for item in unique.values()))
        return {key.key_id: key for key in keys}

    def forget(self, key_id: uuid.UUID) -> None:
        self._cache.forget(key_id)

    async def aclose(self) -> None:
        self._sync.close()
        await self._async.aclose()

    # --- internals ------------------------------------------------------------------------
    def _unwrap_legacy(self, wrapped: WrappedKey) -> DataKey:
        """Data keys wrapped by the local KEK before the move to Key Vault."""
        if self._legacy is None:
            raise IntegrityError("data key is wrapped by an unknown key-encryption key")
        return self._legacy.unwrap(wrapped)

    def _version_of(self, wrapped: WrappedKey) -> str:
        name, _, version = wrapped.kek_id[len(KEK_ID_PREFIX) :].partition("/")
        if name != self._name or not version:
            raise IntegrityError("data key is wrapped by an unknown key-encryption key")
        return version

    def _accept(self, wrapped: WrappedKey, plaintext: bytes) -> DataKey:
        if len(plaintext) != 16 + _DATA_KEY_BYTES or plaintext[:16] != wrapped.key_id.bytes:
            raise IntegrityError("data key failed authentication")
        key = DataKey(wrapped.key_id, plaintext[16:])
        self._cache.put(wrapped, key)
        return key

    def _current_key(self) -> _CurrentKey:
        current = self._latest
        if current is not None and time.monotonic() - current.fetched_at < self._refresh_seconds:
            return current
        with self._key_lock:
            current = self._latest
            if current is None or time.monotonic() - current.fetched_at >= self._refresh_seconds:
                current = self._latest = self._fetch_current_key()
            return current

    def _fetch_current_key(self) -> _CurrentKey:
        body = self._request_sync("GET", f"{self._vault}/keys/{self._name}", None, "get")
        jwk = body.get("key") or {}
        name, version = parse_kid(str(jwk.get("kid", "")))
        if name != self._name:
            raise KeyVaultError(f"Key Vault answered for another key: {name!r}")
        if not (body.get("attributes") or {}).get("enabled", True):
            raise KeyVaultError(f"the current version of key {name!r} is disabled")
        if jwk.get("kty") not in ("RSA", "RSA-HSM"):
            raise KeyVaultError(f"key {name!r} must be an RSA key, not {jwk.get('kty')!r}")
        public = None
        if jwk.get("n") and jwk.get("e"):
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(b64url_decode(jwk["e"]), "big"),
                int.from_bytes(b64url_decode(jwk["n"]), "big"),
            )
            public = numbers.public_key()
        return _CurrentKey(kek_tag(name, version), version, public, time.monotonic())

    def _operation_url(self, operation: str, version: str) -> str:
        return f"{self._vault}/keys/{self._name}/{version}/{operation}"

    def _call_sync(self, operation: str, version: str, value: bytes) -> bytes:
        body = self._request_sync(
            "POST",
            self._operation_url(operation, version),
            {"alg": ALGORITHM, "value": b64url_encode(value)},
            operation,
        )
        return self._value(body, operation)

    async def _call_async(self, operation: str, version: str, value: bytes) -> bytes:
        token = self._bearer() if self._token_fresh() else await asyncio.to_thread(self._bearer)
        try:
            response = await self._async.post(
                self._operation_url(operation, version),
                params={"api-version": API_VERSION},
                json={"alg": ALGORITHM, "value": b64url_encode(value)},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise KeyVaultError(f"Key Vault is unreachable ({type(exc).__name__})") from exc
        self.calls[operation] += 1
        return self._value(self._check(response, operation), operation)

    def _request_sync(
        self, method: str, url: str, payload: dict[str, str] | None, operation: str
    ) -> dict[str, Any]:
        try:
            response = self._sync.request(
                method,
                url,
                params={"api-version": API_VERSION},
                json=payload,
                headers={"Authorization": f"Bearer {self._bearer()}"},
            )
        except httpx.HTTPError as exc:
            raise KeyVaultError(f"Key Vault is unreachable ({type(exc).__name__})") from exc
        self.calls[operation] += 1
        return self._check(response, operation)

    def _check(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        code = error.get("code", "")
        detail = f"{response.status_code} {code}".strip()
        if response.status_code in (401, 403):
            raise KeyVaultError(
                f"Key Vault refused {operation} on key {self._name!r} ({detail}): the managed "
                "identity needs the 'Key Vault Crypto User' role on that key and a valid token"
            )
        if response.status_code == 400 and operation == "unwrapkey":
            raise IntegrityError("data key failed authentication")
        raise KeyVaultError(f"Key Vault failed {operation} on key {self._name!r} ({detail})")

    def _value(self, body: dict[str, Any], operation: str) -> bytes:
        value = body.get("value")
        if not isinstance(value, str):
            raise KeyVaultError(f"Key Vault answered {operation} without a value")
        return b64url_decode(value)

    def _token_fresh(self) -> bool:
        token = self._token
        return token is not None and token[1] - _TOKEN_MARGIN_SECONDS > time.time()

    def _bearer(self) -> str:
        if self._token_fresh():
            assert self._token is not None
            return self._token[0]
        with self._token_lock:
            if not self._token_fresh():
                try:
                    access = self._credential.get_token(SCOPE)
                except Exception as exc:  # azure-identity raises its own types
                    raise KeyVaultError(
                        "no token for Key Vault from the managed identity "
                        f"({type(exc).__name__}); check AZURE_CLIENT_ID and the identity"
                    ) from exc
                self._token = (str(access.token), float(access.expires_on))
            assert self._token is not None
            return self._token[0]


def default_credential(client_id: str | None) -> TokenCredential:
    """The managed identity (a user-assigned one when `client_id` is set); elsewhere the
    developer's Azure CLI login, through ``DefaultAzureCredential``."""
    # Lazy: azure-identity is heavy (~0.3 s); needed only with the Key Vault KEK provider.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        credential: TokenCredential = ManagedIdentityCredential(client_id=client_id)
        return credential
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def keyring_from_settings(
    settings: Settings,
    *,
    credential: TokenCredential | None = None,
    verify: ssl.SSLContext | str | bool = True,
) -> KeyVaultKeyRing:
    """The Key Vault ring the settings describe. A local HELPDESK_KEK, when set, still
    unwraps the data keys it wrapped before the move (``KeyStore.rewrap_all`` moves them
    into the vault)."""
    if not settings.azure_key_vault_url:
        raise ValueError("HELPDESK_AZURE_KEY_VAULT_URL is required for azure-keyvault")
    keks = settings.key_encryption_keys()
    legacy = KeyRing(settings.kek_id, keks) if settings.kek_id in keks else None
    return KeyVaultKeyRing(
        settings.azure_key_vault_url,
        settings.azure_key_name,
        credential or default_credential(settings.azure_client_id),
        verify=verify,
        local_wrap=settings.azure_key_local_wrap,
        cache_seconds=settings.azure_key_cache_seconds,
        cache_size=settings.azure_key_cache_size,
        refresh_seconds=settings.azure_key_refresh_seconds,
        timeout_seconds=settings.azure_key_timeout_seconds,
        legacy=legacy,
    )
