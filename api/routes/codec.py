"""The Temporal UI's remote codec: POST /encode and POST /decode.

Temporal stores only ciphertext (see `helpdesk.temporal.EncryptionCodec`). The Temporal UI
calls `<endpoint>/decode` with the stored payloads to show a workflow's inputs and results;
this endpoint decrypts them for MFA-verified managers and administrators only, and every
decode is audited (a count, never the contents). Protocol: protobuf JSON of `Payloads`,
i.e. ``{"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.cors import JsonCorsMiddleware
from api.deps import ManagerOrAdmin, RuntimeDep, SessionDep
from helpdesk.errors import ValidationFailed
from helpdesk.settings import Settings
from helpdesk.temporal import codec as payload_codec

router = APIRouter()

# A workflow history page the UI decodes at once stays far below this.
MAX_PAYLOADS = 1000


class CodecPayload(BaseModel):
    """One `temporal.api.common.v1.Payload` in protobuf JSON (bytes as base64)."""

    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""


class CodecPayloads(BaseModel):
    """The body of both codec calls and of their answers."""

    payloads: list[CodecPayload] = Field(default_factory=list, max_length=MAX_PAYLOADS)


def _to_proto(body: CodecPayloads) -> list[Payload]:
    try:
        return [json_format.ParseDict(item.model_dump(), Payload()) for item in body.payloads]
    except json_format.ParseError as exc:
        raise ValidationFailed("payload metadata and data must be base64") from exc


def _to_json(payloads: list[Payload]) -> JSONResponse:
    return JSONResponse(
        {"payloads": [_payload_dict(p) for p in payloads]},
        headers={"Cache-Control": "no-store"},
    )


def _payload_dict(payload: Payload) -> dict[str, Any]:
    as_dict = json_format.MessageToDict(payload)
    as_dict.setdefault("metadata", {})
    as_dict.setdefault("data", "")
    return as_dict


@router.post("/encode", response_model=CodecPayloads)
async def encode(body: CodecPayloads, principal: ManagerOrAdmin, runtime: RuntimeDep) -> Any:
    """Encrypt payloads the way the API and the worker do (the UI uses it to send input)."""
    encoded = await payload_codec(runtime.settings).encode(_to_proto(body))
    return _to_json(encoded)


@router.post("/decode", response_model=CodecPayloads)
async def decode(
    body: CodecPayloads,
    request: Request,
    principal: ManagerOrAdmin,
    runtime: RuntimeDep,
    session: SessionDep,
) -> Any:
    """Decrypt payloads for display in the Temporal UI; audited with the count only."""
    try:
        decoded = await payload_codec(runtime.settings, strict=False).decode(_to_proto(body))
    except ValueError as exc:
        # Unknown key id or a failed GCM tag: say so without echoing anything back.
        raise ValidationFailed(
            "a payload could not be decrypted",
            audit={
                "action": "temporal.codec_decode",
                "outcome": "failure",
                "details": {"count": len(body.payloads), "why": "undecryptable"},
            },
        ) from exc
    await runtime.audit.record(
        session,
        "temporal.codec_decode",
        details={
            "count": len(decoded),
            "namespace": request.headers.get("x-namespace", "")[:64],
        },
    )
    return _to_json(decoded)


def ui_origins(settings: Settings) -> list[str]:
    """Browser origins allowed to call the codec: the dev server's Temporal UI and any
    configured CORS origin (a Temporal UI deployed elsewhere)."""
    port = settings.temporal_ui_port
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}", *settings.cors_origins]


class CodecCorsMiddleware:
    """CORS for the codec routes only: the Temporal UI runs on another origin and sends
    `Content-Type: application/json`, `X-Namespace` and, when configured to pass its
    access token, `Authorization`, so the browser preflights every call. The rest of the
    API keeps the stricter CORS of `settings.cors_origins`."""

    def __init__(self, app: ASGIApp, origins: list[str], path_prefix: str) -> None:
        self.app = app
        self.path_prefix = path_prefix.rstrip("/") + "/"
        self.cors = JsonCorsMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.path_prefix):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
