"""The one Temporal client factory: data converter with the AES-GCM payload codec, the
failure converter that encrypts failure messages, namespace and search attributes.

API, worker, tests and the replayer all use `data_converter(settings)`, so a payload written
by one is readable by every other and by the codec endpoint the Temporal UI calls.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.service import TLSConfig

from helpdesk.settings import Settings

ENCODING = b"binary/encrypted-aes256gcm"
_NONCE = 12

# Search attributes a manager filters by in the Temporal UI. Plaintext: never PHI.
TICKET_STATUS = SearchAttributeKey.for_keyword("TicketStatus")
TICKET_PRIORITY = SearchAttributeKey.for_keyword("TicketPriority")
ASSIGNED_AGENT = SearchAttributeKey.for_keyword("AssignedAgent")
ESCALATED = SearchAttributeKey.for_bool("Escalated")
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    TICKET_STATUS,
    TICKET_PRIORITY,
    ASSIGNED_AGENT,
    ESCALATED,
)


def search_attribute_cli_args() -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "BOOL": "Bool", "INT": "Int", "TEXT": "Text"}
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        kind = kinds[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
        args += ["--search-attribute", f"{key.name}={kind}"]
    return args


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; the key id travels in the payload metadata."""

    def __init__(
        self, key: bytes, key_id: str = "codec-1", old_keys: dict[str, bytes] | None = None
    ):
        if len(key) != 32:
            raise ValueError("payload codec key must be 32 bytes")
        self._key_id = key_id.encode()
        self._keys = {key_id.encode(): AESGCM(key)}
        for old_id, old_key in (old_keys or {}).items():
            self._keys[old_id.encode()] = AESGCM(old_key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            nonce = os.urandom(_NONCE)
            sealed = self._keys[self._key_id].encrypt(
                nonce, payload.SerializeToString(), self._key_id
            )
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, "encryption-key-id": self._key_id},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            key_id = payload.metadata.get("encryption-key-id", b"")
            cipher = self._keys.get(key_id)
            if cipher is None:
                raise ValueError("payload encrypted with an unknown key id")
            try:
                raw = cipher.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], key_id)
            except InvalidTag as exc:
                raise ValueError("payload failed authentication") from exc
            decoded = Payload()
            decoded.ParseFromString(raw)
            out.append(decoded)
        return out


def codec(settings: Settings) -> EncryptionCodec:
    return EncryptionCodec(settings.secret_bytes("payload_codec_key"))


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic-aware JSON, encrypted payloads, failure messages encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


# One SDK runtime per metrics address in this process: each serves its own port.
_SDK_RUNTIMES: dict[str, TemporalRuntime] = {}


def sdk_runtime(settings: Settings) -> TemporalRuntime | None:
    """The Temporal SDK runtime that serves the SDK's own Prometheus metrics (worker task
    latencies, slots, polls, sticky cache) on `temporal_metrics_address`, or None (the
    SDK's default runtime, no metrics port) when that setting is empty."""
    address = settings.temporal_metrics_address
    if not address:
        return None
    runtime = _SDK_RUNTIMES.get(address)
    if runtime is None:
        runtime = _SDK_RUNTIMES[address] = TemporalRuntime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address))
        )
    return runtime


async def connect(settings: Settings, *, address: str | None = None) -> Client:
    """A client for the API, the worker or a test; all share one converter."""
    from helpdesk import tracing

    tracing.configure(settings)
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        address or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=api_key,
        runtime=sdk_runtime(settings),
        interceptors=tracing.client_interceptors(),
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to Temporal: off, on with the system CAs, or mTLS with a client certificate
    (Temporal Cloud or a self-hosted cluster with mTLS). An API key implies TLS."""
    cert, key, ca = (
        settings.temporal_tls_client_cert_file,
        settings.temporal_tls_client_key_file,
        settings.temporal_tls_server_ca_file,
    )
    if (cert is None) != (key is None):
        raise ValueError(
            "HELPDESK_TEMPORAL_TLS_CLIENT_CERT_FILE and _KEY_FILE must be set together"
        )
    if cert is None and ca is None:
        return settings.temporal_tls or settings.temporal_api_key is not None
    return TLSConfig(
        client_cert=cert.read_bytes() if cert else None,
        client_private_key=key.read_bytes() if key else None,
        server_root_ca_cert=ca.read_bytes() if ca else None,
    )


def ticket_workflow_id(ticket_id: object) -> str:
    """Business-key workflow id: `ticket-<uuid>` (no PHI)."""
    return f"ticket-{ticket_id}"


def names(keys: Iterable[SearchAttributeKey]) -> list[str]:
    return [key.name for key in keys]
