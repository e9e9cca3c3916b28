"""Helpers of the auth API tests: register, log in, read the mailbox and the audit rows."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from helpdesk.runtime import Runtime
from models.audit import AuditLog
from models.user import User
from tests.support.factories import PASSWORD

API = "/api/v1"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


async def register(
    client: httpx.AsyncClient,
    email: str,
    *,
    password: str = PASSWORD,
    full_name: str = "Pat Example",
    phone: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": password, "full_name": full_name}
    if phone is not None:
        body["phone"] = phone
    body.update(extra)
    return await client.post(f"{API}/auth/register", json=body)


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"{API}/auth/login", json={"email": email, "password": password, **extra}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mail_to(runtime: Runtime, address: str) -> list[dict[str, str]]:
    return [m for m in runtime.email.messages() if m["to"].lower() == address.lower()]


def link_token(message: dict[str, str]) -> str:
    found = re.search(r"#token=([A-Za-z0-9_-]+)", message["body"])
    assert found, "the mail carries no link with a token"
    return found.group(1)


async def audit_rows(runtime: Runtime, action: str) -> list[AuditLog]:
    async with runtime.database.transaction() as session:
        rows = await session.scalars(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)
        )
        return list(rows)


async def load_user(runtime: Runtime, user_id: uuid.UUID) -> User:
    async with runtime.database.transaction() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()["error"]
    body.pop("request_id")
    return dict(body)
