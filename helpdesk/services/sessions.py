"""Login sessions: creation, validation (idle and absolute limits), refresh rotation with
reuse detection (RFC 9700 §4.14.2), revocation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.errors import AuthenticationFailed
from helpdesk.principal import Principal
from helpdesk.runtime import Runtime
from helpdesk.security import AccessClaims, AccessTokens, hash_token, new_opaque_token
from models.user import AuthSession, RefreshToken, User

LAST_SEEN_GRANULARITY = timedelta(seconds=15)


def prepare_runtime(runtime: Runtime) -> Runtime:
    """Objects every request needs, built once per process (API and worker alike)."""
    runtime.passwords  # noqa: B018 (built now, not in the first request)
    runtime.access_tokens  # noqa: B018
    return runtime


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


def access_tokens(runtime: Runtime) -> AccessTokens:
    return runtime.access_tokens


def _now() -> datetime:
    return datetime.now(UTC)


async def start(
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    *,
    mfa: bool,
    ip: str | None,
    user_agent: str | None,
) -> IssuedTokens:
    """A new server-side session with its first refresh token and an access token."""
    now = _now()
    settings = runtime.settings
    auth_session = AuthSession(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.session_absolute_lifetime_seconds),
        mfa=mfa,
        ip=ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(auth_session)
    await session.flush()
    refresh, refresh_hash = new_opaque_token()
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            token_hash=refresh_hash,
            created_at=now,
            expires_at=min(
                now + timedelta(seconds=settings.refresh_token_ttl_seconds),
                auth_session.expires_at,
            ),
        )
    )
    await session.flush()
    tokens = access_tokens(runtime)
    return IssuedTokens(
        access_token=tokens.issue(user.id, auth_session.id, user.role, mfa),
        refresh_token=refresh,
        expires_in=tokens.ttl_seconds,
        session_id=auth_session.id,
    )


def session_problem(auth_session: AuthSession, runtime: Runtime, now: datetime) -> str | None:
    """Why a session can no longer be used, or None if it can."""
    if auth_session.revoked_at is not None:
        return "revoked"
    if now >= auth_session.expires_at:
        return "expired"
    idle = timedelta(seconds=runtime.settings.session_idle_timeout_seconds)
    if now - auth_session.last_seen_at > idle:
        return "idle"
    return None


async def load_active(runtime: Runtime, claims: AccessClaims) -> Principal:
    """The principal behind an access token, if its session and user are still good.

    Checked on every request, so the common case is a read-only snapshot that never waits
    for the database's writer; only an idle session's revocation, or a last-seen stamp
    older than `LAST_SEEN_GRANULARITY`, takes a write transaction."""
    now = _now()
    async with runtime.database.read() as session:
        # Session and user in one statement: this runs before every request.
        found = (
            await session.execute(
                select(AuthSession, User)
                .outerjoin(User, User.id == AuthSession.user_id)
                .where(AuthSession.id == claims.session_id)
            )
        ).first()
        if found is None or found[0].user_id != claims.user_id:
            raise AuthenticationFailed("session not found")
        auth_session: AuthSession | None = found[0]
        user: User | None = found[1]
        assert auth_session is not None
        problem = session_problem(auth_session, runtime, now)
        if problem is None and (user is None or not user.is_active):
            problem = "user_inactive"
        stale = now - auth_session.last_seen_at >= LAST_SEEN_GRANULARITY
    if problem is None and not stale:
        assert user is not None
        return Principal(user=user, session=auth_session, claims=claims)
    if problem in (None, "idle"):
        async with runtime.database.transaction() as session:
            # Judged again under the write lock: a logout may have committed meanwhile.
            auth_session = await session.get(AuthSession, claims.session_id)
            if auth_session is None:
                raise AuthenticationFailed("session not found")
            problem = session_problem(auth_session, runtime, now)
            if problem == "idle":
                await _end(session, runtime, auth_session, "idle_timeout")
            if problem is None:
                user = await session.get(User, claims.user_id)
                if user is None or not user.is_active:
                    problem = "user_inactive"
                else:
                    if now - auth_session.last_seen_at >= LAST_SEEN_GRANULARITY:
                        auth_session.last_seen_at = now
                    return Principal(user=user, session=auth_session, claims=claims)
    # Raised after the block so that an idle revocation above is committed.
    raise AuthenticationFailed(f"session {(problem or 'invalid').replace('_', ' ')}")


async def _end(
    session: AsyncSession, runtime: Runtime, auth_session: AuthSession, reason: str
) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = _now()
        auth_session.revoke_reason = reason
        await runtime.audit.record(
            session,
            f"session.{reason}",
            table="auth_sessions",
            record_id=auth_session.id,
            actor_id=auth_session.user_id,
        )
        on_revoke = runtime.on_session_revoked
        if on_revoke is not None:
            on_revoke(auth_session.id)


async def revoke(
    session: AsyncSession, runtime: Runtime, auth_session: AuthSession, reason: str
) -> None:
    """End one session now: its access tokens stop working on their next use."""
    await _end(session, runtime, auth_session, reason)


async def revoke_all_for_user(
    session: AsyncSession, runtime: Runtime, user_id: uuid.UUID, reason: str
) -> int:
    """End every live session of a user (deactivation, password reset, role change)."""
    live = list(
        await session.scalars(
            select(AuthSession).where(
                AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
            )
        )
    )
    for auth_session in live:
        await _end(session, runtime, auth_session, reason)
    return len(live)


async def rotate_refresh(runtime: Runtime, refresh_token: str) -> IssuedTokens:
    """Exchange a refresh token for new tokens. A token used twice revokes the session.

    Runs in a transaction of its own so that a revocation commits even though the caller
    gets an error."""
    async with runtime.database.transaction() as session:
        outcome = await _rotate(session, runtime, refresh_token)
    if isinstance(outcome, AuthenticationFailed):
        raise outcome
    return outcome


async def _rotate(
    session: AsyncSession, runtime: Runtime, refresh_token: str
) -> IssuedTokens | AuthenticationFailed:
    now = _now()
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
    )
    auth_session = await session.get(AuthSession, row.session_id) if row else None
    if row is None or auth_session is None:
        return AuthenticationFailed("invalid refresh token")
    if row.rotated_at is not None:
        await _end(session, runtime, auth_session, "refresh_reuse")
        return AuthenticationFailed("refresh token reused; the session is revoked")
    problem = session_problem(auth_session, runtime, now)
    if problem == "idle":
        await _end(session, runtime, auth_session, "idle_timeout")
    if problem is None and now >= row.expires_at:
        problem = "expired"
    user = await session.get(User, auth_session.user_id)
    if problem is None and (user is None or not user.is_active):
        problem = "user_inactive"
    if problem is not None or user is None:
        return AuthenticationFailed(f"session {(problem or 'invalid').replace('_', ' ')}")
    # Claim the token atomically: a concurrent second use finds it already rotated.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await _end(session, runtime, auth_session, "refresh_reuse")
        return AuthenticationFailed("refresh token reused; the session is revoked")
    fresh, fresh_hash = new_opaque_token()
    replacement = RefreshToken(
        session_id=auth_session.id,
        token_hash=fresh_hash,
        created_at=now,
        expires_at=min(
            now + timedelta(seconds=runtime.settings.refresh_token_ttl_seconds),
            auth_session.expires_at,
        ),
    )
    session.add(replacement)
    await session.flush()
    row.replaced_by = replacement.id
    auth_session.last_seen_at = now
    await runtime.audit.record(
        session,
        "auth.refresh",
        table="auth_sessions",
        record_id=auth_session.id,
        actor_id=user.id,
        actor_role=user.role,
    )
    tokens = access_tokens(runtime)
    return IssuedTokens(
        access_token=tokens.issue(user.id, auth_session.id, user.role, auth_session.mfa),
        refresh_token=fresh,
        expires_in=tokens.ttl_seconds,
        session_id=auth_session.id,
    )
