"""Test data made through the real services (no fixtures of raw rows)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from helpdesk.runtime import Runtime
from helpdesk.security import new_totp_secret
from helpdesk.services import sessions, users
from models.enums import Role
from models.user import User

PASSWORD = "correct horse battery staple 42"
_counter = itertools.count(1)


@dataclass
class Actor:
    """A user of the test with a ready access token."""

    user: User
    email: str
    password: str
    token: str
    refresh_token: str
    session_id: uuid.UUID
    totp_secret: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(
    runtime: Runtime,
    role: Role = Role.END_USER,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    full_name: str | None = None,
    mfa: bool | None = None,
    verified: bool = True,
) -> Actor:
    """A user and a live session. Managers and administrators get TOTP and an MFA session
    unless `mfa=False`. The email counts as confirmed unless `verified=False` (an
    unverified account may only verify or ask for a new link)."""
    n = next(_counter)
    email = email or f"{role.value.lower()}{n}-{uuid.uuid4().hex[:6]}@example.test"
    with_mfa = role in (Role.MANAGER, Role.ADMINISTRATOR) if mfa is None else mfa
    secret = new_totp_secret() if with_mfa else None
    async with runtime.database.transaction() as session:
        user = await users.create_user(
            session,
            runtime,
            email=email,
            password=password,
            full_name=full_name or f"Test Person {n}",
            role=role,
            email_verified_at=datetime.now(UTC) if verified else None,
        )
        if secret:
            await users.seal_mfa_secret(session, runtime, user, secret)
            user.mfa_enabled = True
        issued = await sessions.start(
            session, runtime, user, mfa=with_mfa, ip="127.0.0.1", user_agent="pytest"
        )
    return Actor(
        user, email, password, issued.access_token, issued.refresh_token, issued.session_id, secret
    )
