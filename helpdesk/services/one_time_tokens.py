"""Single-use tokens of emailed links (email verification, password reset): only their
SHA-256 is stored, each lives `one_time_token_ttl_seconds`, the newest of a purpose is the
only good one, and a use is claimed atomically. The links are built from configuration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.errors import ValidationFailed
from helpdesk.runtime import Runtime
from helpdesk.security import hash_token, new_opaque_token
from models.enums import TokenPurpose
from models.user import OneTimeToken, User

BAD_LINK = "this link is invalid, already used or expired"


def _now() -> datetime:
    return datetime.now(UTC)


async def issue(
    session: AsyncSession, runtime: Runtime, user_id: uuid.UUID, purpose: TokenPurpose
) -> tuple[str, uuid.UUID]:
    """A fresh single-use token (only its SHA-256 is stored); earlier unused tokens of the
    same purpose stop working, so only the newest link is good."""
    now = _now()
    await session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose.value,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token, digest = new_opaque_token()
    row = OneTimeToken(
        id=uuid.uuid4(),
        user_id=user_id,
        purpose=purpose.value,
        token_hash=digest,
        created_at=now,
        expires_at=now + timedelta(seconds=runtime.settings.one_time_token_ttl_seconds),
    )
    session.add(row)
    await session.flush()
    return token, row.id


async def find(session: AsyncSession, token: str, purpose: TokenPurpose) -> OneTimeToken | None:
    """The token's row while it is unused and unexpired."""
    row = await session.scalar(
        select(OneTimeToken).where(
            OneTimeToken.token_hash == hash_token(token), OneTimeToken.purpose == purpose.value
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= _now():
        return None
    return row


async def consume(session: AsyncSession, token: str, purpose: TokenPurpose) -> User:
    """Mark the token used (atomically: a second use, even concurrent, fails) and return
    its active user."""
    row = await find(session, token, purpose)
    if row is not None:
        claimed = await session.execute(
            update(OneTimeToken)
            .where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
            .values(used_at=_now())
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            user = await session.get(User, row.user_id, with_for_update=True)
            if user is not None and user.is_active:
                return user
    raise bad_link(purpose)


def bad_link(purpose: TokenPurpose) -> ValidationFailed:
    return ValidationFailed(
        BAD_LINK,
        audit={
            "action": f"auth.{purpose.value}",
            "outcome": "failure",
            "details": {"reason": "invalid_token"},
        },
    )


def link(runtime: Runtime, page: str, token: str) -> str:
    """`<public_base_url>/<page>#token=...`: a portal's page when one is configured, else
    the API's own minimal page (`api.routes.link_pages`). Built from configuration, never
    from the request's Host header; the token rides in the fragment so it never reaches a
    server log or a Referer header."""
    return f"{runtime.settings.public_base_url.rstrip('/')}/{page}#token={token}"
