"""The one Temporal client factory: data converter with the AES-GCM payload codec, the
failure converter that encrypts failure messages, namespace and search attributes.

API, worker, tests and the replayer all use `data_converter(settings)`, so a payload written
by one is readable by every other and by the codec endpoint the Temporal UI calls.

Inbound, the codec refuses plaintext: a payload without its encoding (the `temporal` CLI's
`--input`, say) is replaced by a `binary/refused-plaintext` payload no converter reads, so the
update is rejected (nothing enters history), a signal is dropped, and the refusal is counted
and audited (`helpdesk.command_auth`). The one exception is UI text (`UiText`): activity and
timer summaries, static summaries and current details are PHI-free by design and stay
plaintext so a manager reads them in the Temporal UI; a UI text payload is a JSON string
only, which no command of ours takes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Self

import temporalio.client
import temporalio.worker
import temporalio.workflow
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import (
    PydanticJSONPlainPayloadConverter,
    PydanticPayloadConverter,
    pydantic_data_converter,
)
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.service import TLSConfig

from helpdesk import tracing
from helpdesk.command_auth import CommandSigner, Refusal, refused
from helpdesk.settings import Settings

ENCODING = b"binary/encrypted-aes256gcm"
_NONCE = 12
# Metadata marking a payload as UI text (PHI-free by design): sent and stored unencrypted.
UI_TEXT = "helpdesk-ui-text"
_JSON_PLAIN = b"json/plain"
_METADATA_TYPE = WorkflowMetadata.DESCRIPTOR.full_name.encode()
# What a refused plaintext payload becomes: no payload converter reads this encoding.
REFUSED_ENCODING = b"binary/refused-plaintext"


class UiText(str):
    """Text for the Temporal UI (summaries, details): never PHI, so never encrypted."""

    __slots__ = ()


def ui_text(text: str) -> UiText:
    """Mark `text` (PHI-free: ids, numbers, statuses, fixed words) as readable UI text."""
    return UiText(text)


# One for the process. The SDK makes a payload converter for every workflow run, and each
# pydantic one would build its own cache of TypeAdapters (a schema and validator for each
# non-model type a run decodes, `list[str]` say) and keep it for the run's life (bench.core
# at 1000 cached: 103 -> 94 KB per ticket). Shared, each type's adapter is built once
# (lru_cache and TypeAdapter are safe to use from the workflow threads).
_PYDANTIC_JSON = PydanticJSONPlainPayloadConverter()


class HelpdeskPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, marking `UiText` values so the codec leaves them
    readable; its JSON converter (and TypeAdapter cache) is the process's one."""

    def __init__(self) -> None:
        # PydanticPayloadConverter's own __init__ would make a JSON converter per instance.
        CompositePayloadConverter.__init__(
            self,
            *(
                _PYDANTIC_JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            ),
        )

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        payloads = super().to_payloads(values)
        for value, payload in zip(values, payloads, strict=True):
            if isinstance(value, UiText) and payload.metadata.get("encoding") == _JSON_PLAIN:
                payload.metadata[UI_TEXT] = b"1"
            elif isinstance(value, WorkflowMetadata):
                # The UI's `__temporal_workflow_metadata` query: handler descriptions and the
                # current details, PHI-free like the summaries.
                payload.metadata[UI_TEXT] = b"1"
        return payloads


class UiSummaries(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Every summary is UI text: static summaries and details of the workflows we start
    (client side) and the summaries of the activities our workflows run (worker side). A
    summary never holds PHI (ids, numbers, statuses, fixed words): review them as such."""

    def intercept_client(
        self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        return _UiClient(next)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _UiInbound


def _ui(text: str | None) -> str | None:
    return UiText(text) if text else text


class _UiClient(temporalio.client.OutboundInterceptor):
    async def start_workflow(
        self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        input.static_summary = _ui(input.static_summary)
        input.static_details = _ui(input.static_details)
        return await super().start_workflow(input)

    async def start_update_with_start_workflow(
        self, input: temporalio.client.StartWorkflowUpdateWithStartInput
    ) -> temporalio.client.WorkflowUpdateHandle[Any]:
        start = input.start_workflow_input
        start.static_summary = _ui(start.static_summary)
        start.static_details = _ui(start.static_details)
        return await super().start_update_with_start_workflow(input)


class _UiInbound(temporalio.worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        super().init(_UiOutbound(outbound))


class _UiOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.summary = _ui(input.summary)
        return super().start_activity(input)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.summary = _ui(input.summary)
        return super().start_local_activity(input)


def is_ui_text(payload: Payload) -> bool:
    """A UI text payload: marked, and a JSON string or the workflow metadata the UI queries
    (nothing a command of ours takes)."""
    if payload.metadata.get(UI_TEXT) != b"1":
        return False
    if payload.metadata.get("messageType") == _METADATA_TYPE:
        return payload.metadata.get("encoding") == b"json/protobuf"
    if payload.metadata.get("encoding") != _JSON_PLAIN:
        return False
    try:
        return isinstance(json.loads(payload.data), str)
    except ValueError:
        return False


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


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over whole payloads; the key id travels in the payload metadata.

    `strict` (API and worker): an inbound payload that is neither encrypted nor UI text is
    refused (see the module docstring). The codec endpoint decodes leniently: the UI sends
    it the plaintext summaries too."""

    def __init__(
        self,
        key: bytes,
        key_id: str = "codec-1",
        old_keys: dict[str, bytes] | None = None,
        *,
        strict: bool = True,
        workflow_id: str = "",
    ):
        if len(key) != 32:
            raise ValueError("payload codec key must be 32 bytes")
        self._key_id = key_id.encode()
        self._keys = {key_id.encode(): AESGCM(key)}
        for old_id, old_key in (old_keys or {}).items():
            self._keys[old_id.encode()] = AESGCM(old_key)
        self._strict = strict
        self._workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        """The same codec, knowing which workflow it decodes for (to audit a refusal)."""
        workflow_id = getattr(context, "workflow_id", None)
        if not isinstance(context, WorkflowSerializationContext) or not workflow_id:
            return self
        new = copy.copy(self)
        new._workflow_id = workflow_id
        return new

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if is_ui_text(payload):
                out.append(payload)
                continue
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
                if not self._strict or is_ui_text(payload):
                    out.append(payload)
                    continue
                out.append(self._refuse_plaintext())
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

    def _refuse_plaintext(self) -> Payload:
        refused(
            Refusal(
                kind="payload",
                reason="plaintext",
                workflow_id=self._workflow_id,
                command="",
                actor_id="",
                role="",
            )
        )
        return Payload(metadata={"encoding": REFUSED_ENCODING}, data=b"")


def codec(settings: Settings, *, strict: bool = True) -> EncryptionCodec:
    return EncryptionCodec(settings.secret_bytes("payload_codec_key"), strict=strict)


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic-aware JSON, encrypted payloads (UI text aside), failure messages encrypted
    too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=HelpdeskPayloadConverter,
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
    tracing.configure(settings)
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        address or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=api_key,
        runtime=sdk_runtime(settings),
        interceptors=[
            *tracing.client_interceptors(),
            UiSummaries(),
            CommandSigner(settings.secret_bytes("command_key")),
        ],
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
