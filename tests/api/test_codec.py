"""The Temporal UI's codec endpoint: round trip, who may call it, audit, CORS."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import Payload

from helpdesk.temporal import ENCODING, codec
from models.audit import AuditLog
from models.enums import Role
from tests.support.factories import make_user

ENCODE = "/api/v1/temporal-codec/encode"
DECODE = "/api/v1/temporal-codec/decode"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def plain_payloads(*texts: str) -> dict:
    return {
        "payloads": [
            {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(t).encode())}
            for t in texts
        ]
    }


async def test_encode_then_decode_round_trips_for_a_manager(client, runtime) -> None:
    manager = await make_user(runtime, Role.MANAGER)
    original = plain_payloads("Patient reports chest pain", "second")

    encoded = await client.post(ENCODE, json=original, headers=manager.headers)
    assert encoded.status_code == 200
    assert encoded.headers["cache-control"] == "no-store"
    sealed = encoded.json()["payloads"]
    assert len(sealed) == 2
    for item in sealed:
        assert base64.b64decode(item["metadata"]["encoding"]) == ENCODING
        assert b"chest pain" not in base64.b64decode(item["data"])

    decoded = await client.post(
        DECODE, json={"payloads": sealed}, headers={**manager.headers, "X-Namespace": "default"}
    )
    assert decoded.status_code == 200
    assert decoded.json() == original


async def test_decode_reads_what_the_worker_wrote_and_is_audited(client, runtime) -> None:
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    inner = Payload(metadata={"encoding": b"json/plain"}, data=b'"from the worker"')
    [sealed] = await codec(runtime.settings).encode([inner])
    body = {
        "payloads": [
            {"metadata": {k: b64(v) for k, v in sealed.metadata.items()}, "data": b64(sealed.data)}
        ]
    }

    response = await client.post(
        DECODE, json=body, headers={**admin.headers, "X-Namespace": "default"}
    )
    assert response.status_code == 200
    [item] = response.json()["payloads"]
    assert base64.b64decode(item["data"]) == b'"from the worker"'

    async with runtime.database.transaction() as session:
        rows = list(
            await session.scalars(
                select(AuditLog).where(AuditLog.action == "temporal.codec_decode")
            )
        )
    assert len(rows) == 1
    assert rows[0].actor_id == admin.id
    assert rows[0].outcome == "success"
    assert rows[0].details == {"count": 1, "namespace": "default"}
    assert "from the worker" not in json.dumps(rows[0].details)


async def test_payloads_that_are_not_ours_pass_through_unchanged(client, runtime) -> None:
    manager = await make_user(runtime, Role.MANAGER)
    original = plain_payloads("already plain")
    response = await client.post(DECODE, json=original, headers=manager.headers)
    assert response.status_code == 200
    assert response.json() == original


async def test_tampered_ciphertext_is_refused_and_audited(client, runtime) -> None:
    manager = await make_user(runtime, Role.MANAGER)
    encoded = await client.post(ENCODE, json=plain_payloads("secret"), headers=manager.headers)
    [item] = encoded.json()["payloads"]
    data = bytearray(base64.b64decode(item["data"]))
    data[-1] ^= 0x01
    item["data"] = b64(bytes(data))

    response = await client.post(DECODE, json={"payloads": [item]}, headers=manager.headers)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "a payload could not be decrypted"
    async with runtime.database.transaction() as session:
        row = await session.scalar(
            select(AuditLog).where(AuditLog.action == "temporal.codec_decode")
        )
    assert row is not None
    assert row.outcome == "failure"


async def test_bad_base64_is_a_422(client, runtime) -> None:
    manager = await make_user(runtime, Role.MANAGER)
    response = await client.post(
        DECODE,
        json={"payloads": [{"metadata": {}, "data": "%%% not base64"}]},
        headers=manager.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"


@pytest.mark.parametrize("role", [Role.END_USER, Role.SUPPORT_AGENT])
@pytest.mark.parametrize("path", [ENCODE, DECODE])
async def test_end_users_and_agents_are_refused(client, runtime, role, path) -> None:
    actor = await make_user(runtime, role)
    response = await client.post(path, json=plain_payloads("x"), headers=actor.headers)
    assert response.status_code == 403


async def test_manager_without_mfa_session_is_refused(client, runtime) -> None:
    manager = await make_user(runtime, Role.MANAGER, mfa=False)
    response = await client.post(DECODE, json=plain_payloads("x"), headers=manager.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "mfa_required"


@pytest.mark.parametrize("path", [ENCODE, DECODE])
async def test_anonymous_is_refused(client, path) -> None:
    response = await client.post(path, json=plain_payloads("x"))
    assert response.status_code == 401


async def test_cors_preflight_from_the_temporal_ui(client, runtime) -> None:
    origin = f"http://127.0.0.1:{runtime.settings.temporal_ui_port}"
    response = await client.options(
        DECODE,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "x-namespace", "authorization"):
        assert header in allowed


async def test_cors_refuses_other_origins_and_other_routes(client, runtime) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    evil = await client.options(DECODE, headers={"Origin": "http://evil.example", **preflight})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers

    # The UI's origin gets nothing from the rest of the API.
    origin = f"http://localhost:{runtime.settings.temporal_ui_port}"
    other = await client.options("/api/v1/auth/login", headers={"Origin": origin, **preflight})
    assert "access-control-allow-origin" not in other.headers
