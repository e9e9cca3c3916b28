"""Authentication flows: login (argon2id, lockout with backoff, TOTP), logout, password
reset, MFA enrolment, and account deactivation (registration and email verification are
`helpdesk.services.verification`).

Login and the one-time-token flows own their transactions: a failed login must commit its
failure count and audit row although the caller gets an error, and emails go out only
after the commit they depend on. argon2 runs in a thread, outside any transaction, so a
slow hash never holds SQLite's write lock or blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import ratelimit
from helpdesk.email import EmailMessage
from helpdesk.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    RateLimited,
    ValidationFailed,
)
from helpdesk.runtime import Runtime
from helpdesk.security import (
    Passwords,
    new_totp_secret,
    totp_match,
    totp_uri,
)
from helpdesk.services import one_time_tokens, reassignment, sessions, users
from models.enums import TokenPurpose
from models.user import AuthSession, User

log = logging.getLogger("helpdesk.auth")

BAD_CREDENTIALS = "invalid email or password"
MFA_ISSUER = "Helpdesk"


def _now() -> datetime:
    return datetime.now(UTC)


def _passwords(runtime: Runtime) -> Passwords:
    passwords: Passwords = runtime.passwords
    return passwords


async def send_quietly(runtime: Runtime, message: EmailMessage) -> None:
    """Send a mail after the commit it depends on. A mail outage must not undo the
    account change, so a failure is logged (its type only: texts may echo the address)."""
    try:
        await runtime.email.send(message)
    except Exception as exc:
        log.error(
            "sending %s mail failed: %s", message.message_key.split(":")[0], type(exc).__name__
        )


# --- login ------------------------------------------------------------------------------


async def login(
    runtime: Runtime,
    *,
    email: str,
    password: str,
    totp: str | None,
    ip: str | None,
    user_agent: str | None,
) -> sessions.IssuedTokens:
    """Email and password (and a TOTP code once MFA is on) for a new session.

    An unknown email costs the same argon2 verification and gets the same answer as a
    wrong password. After `login_max_failures` failures the account locks, with backoff;
    a locked account answers 429 even to the right password (reset still works)."""
    passwords = _passwords(runtime)
    bidx = runtime.blind_index.email(email)
    async with runtime.database.transaction() as session:
        found = await session.scalar(select(User).where(User.email_bidx == bidx))

    wait = _locked_for(runtime, found, bidx)
    if wait:
        async with runtime.database.transaction() as session:
            await _audit_failure(session, runtime, found, "locked")
        raise RateLimited("too many failed logins; try again later", retry_after=wait)

    ok = await asyncio.to_thread(passwords.verify, found.password_hash if found else None, password)
    new_hash = None
    if ok and found is not None and passwords.needs_rehash(found.password_hash):
        new_hash = await asyncio.to_thread(passwords.hash, password)

    async with runtime.database.transaction() as session:
        outcome = await _settle_login(
            session,
            runtime,
            found.id if found else None,
            bidx,
            ok=ok,
            new_hash=new_hash,
            totp=totp,
            ip=ip,
            user_agent=user_agent,
        )
    # Raised after the block: the failure count and its audit rows are committed.
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


def _locked_for(runtime: Runtime, user: User | None, bidx: str) -> int:
    if user is None:
        return ratelimit.unknown_account_lockouts(runtime).locked_for(bidx)
    if user.locked_until is None:
        return 0
    left = (user.locked_until - _now()).total_seconds()
    return max(1, math.ceil(left)) if left > 0 else 0


async def _settle_login(
    session: AsyncSession,
    runtime: Runtime,
    user_id: uuid.UUID | None,
    bidx: str,
    *,
    ok: bool,
    new_hash: str | None,
    totp: str | None,
    ip: str | None,
    user_agent: str | None,
) -> sessions.IssuedTokens | DomainError:
    if user_id is None:
        ratelimit.unknown_account_lockouts(runtime).fail(bidx)
        await _audit_failure(session, runtime, None, "unknown_account")
        return AuthenticationFailed(BAD_CREDENTIALS)
    # Locked row (PostgreSQL): concurrent attempts count failures and TOTP steps in turn.
    user = await session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        return AuthenticationFailed(BAD_CREDENTIALS)
    wait = _locked_for(runtime, user, bidx)
    if wait:  # locked by a concurrent attempt since we looked
        await _audit_failure(session, runtime, user, "locked")
        return RateLimited("too many failed logins; try again later", retry_after=wait)
    if not ok:
        return await _count_failure(session, runtime, user, "bad_password")
    if not user.is_active:
        await _audit_failure(session, runtime, user, "inactive")
        return AuthenticationFailed(BAD_CREDENTIALS)
    mfa = False
    if user.mfa_enabled:
        if not totp:
            await _audit_failure(session, runtime, user, "mfa_code_missing")
            return AuthenticationFailed(
                "a one-time code from your authenticator app is required",
                details={"mfa_required": True},
            )
        secret = await users.open_mfa_secret(session, runtime, user)
        step = totp_match(secret or "", totp, last_step=user.mfa_last_step)
        if secret is None or step is None:
            failure = await _count_failure(session, runtime, user, "mfa_code_invalid")
            if isinstance(failure, AuthenticationFailed):
                failure = AuthenticationFailed(
                    "the one-time code is invalid or was already used",
                    details={"mfa_required": True},
                )
            return failure
        # Never accepted twice: later logins need a later step.
        user.mfa_last_step = step
        mfa = True
    user.failed_logins = 0
    user.lockouts = 0
    user.locked_until = None
    user.last_login_at = _now()
    if new_hash is not None:
        user.password_hash = new_hash
    issued = await sessions.start(session, runtime, user, mfa=mfa, ip=ip, user_agent=user_agent)
    await runtime.audit.record(
        session,
        "auth.login",
        table="auth_sessions",
        record_id=issued.session_id,
        actor_id=user.id,
        actor_role=user.role,
        details={"mfa": mfa, "rehashed": new_hash is not None},
    )
    return issued


async def _count_failure(
    session: AsyncSession, runtime: Runtime, user: User, reason: str
) -> DomainError:
    settings = runtime.settings
    user.failed_logins += 1
    await _audit_failure(session, runtime, user, reason)
    if user.failed_logins >= settings.login_max_failures:
        seconds = ratelimit.lockout_duration(settings.login_lockout_seconds, user.lockouts)
        user.locked_until = _now() + timedelta(seconds=seconds)
        user.lockouts += 1
        user.failed_logins = 0
        await runtime.audit.record(
            session,
            "auth.lockout",
            outcome="failure",
            table=users.TABLE,
            record_id=user.id,
            details={"seconds": seconds, "lockout_number": user.lockouts},
        )
    return AuthenticationFailed(BAD_CREDENTIALS)


async def _audit_failure(
    session: AsyncSession, runtime: Runtime, user: User | None, reason: str
) -> None:
    # Who tried is unknown (anonymous caller); IP and user agent come from the context.
    await runtime.audit.record(
        session,
        "auth.login",
        outcome="failure",
        table=users.TABLE,
        record_id=user.id if user else None,
        details={"reason": reason},
    )


# --- refresh ----------------------------------------------------------------------------


async def refresh(runtime: Runtime, refresh_token: str) -> sessions.IssuedTokens:
    """Rotate a refresh token (see `sessions.rotate_refresh`); a refused one is audited
    with its reason (the reuse itself is audited by the revocation)."""
    try:
        return await sessions.rotate_refresh(runtime, refresh_token)
    except AuthenticationFailed as exc:
        raise AuthenticationFailed(
            exc.message,
            audit={
                "action": "auth.refresh",
                "outcome": "failure",
                "table": "auth_sessions",
                "details": {"reason": exc.message},
            },
        ) from None


# --- logout -----------------------------------------------------------------------------


async def logout(session: AsyncSession, runtime: Runtime, session_id: uuid.UUID) -> None:
    """End the caller's session: its access token fails from the next call on."""
    auth_session = await session.get(AuthSession, session_id)
    if auth_session is not None:
        await sessions.revoke(session, runtime, auth_session, "logout")


# --- password reset ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingMail:
    """A message to send once the transaction that made its token has committed."""

    message: EmailMessage


async def request_password_reset(runtime: Runtime, email: str) -> PendingMail | None:
    """A reset link for a known, active account; nothing (and the same answer) otherwise.
    Lockout does not stop a reset: it is how a locked-out person gets back in."""
    async with runtime.database.transaction() as session:
        user = await users.find_by_email(session, runtime, email)
        if user is None or not user.is_active:
            await runtime.audit.record(
                session,
                "auth.reset_requested",
                outcome="failure",
                table=users.TABLE,
                details={"reason": "unknown_account" if user is None else "inactive"},
            )
            return None
        token, token_id = await one_time_tokens.issue(
            session, runtime, user.id, TokenPurpose.RESET_PASSWORD
        )
        address = (await users.view(session, runtime, user)).email
        await runtime.audit.record(
            session,
            "auth.reset_requested",
            table=users.TABLE,
            record_id=user.id,
        )
    minutes = runtime.settings.one_time_token_ttl_seconds // 60
    return PendingMail(
        EmailMessage(
            to=address,
            subject="Reset your help desk password",
            body=(
                "Someone asked to reset the password of your help desk account. If it was "
                f"you, choose a new password with this link (valid {minutes} minutes, "
                f"once):\n{one_time_tokens.link(runtime, 'reset-password', token)}\n"
                "If it was not you, ignore this message; your password is unchanged.\n"
            ),
            message_key=f"reset-password:{token_id}",
        )
    )


async def reset_password(runtime: Runtime, token: str, new_password: str) -> None:
    """Set a new password with a reset token (once): every session of the user ends and
    the lockout clears."""
    async with runtime.database.transaction() as session:
        valid = await one_time_tokens.find(session, token, TokenPurpose.RESET_PASSWORD) is not None
    if not valid:  # checked first so junk tokens cost no argon2 hash
        raise one_time_tokens.bad_link(TokenPurpose.RESET_PASSWORD)
    new_hash = await asyncio.to_thread(_passwords(runtime).hash, new_password)
    async with runtime.database.transaction() as session:
        user = await one_time_tokens.consume(session, token, TokenPurpose.RESET_PASSWORD)
        user.password_hash = new_hash
        user.failed_logins = 0
        user.lockouts = 0
        user.locked_until = None
        revoked = await sessions.revoke_all_for_user(session, runtime, user.id, "password_reset")
        await runtime.audit.record(
            session,
            "auth.password_reset",
            table=users.TABLE,
            record_id=user.id,
            actor_id=user.id,
            actor_role=user.role,
            details={"sessions_revoked": revoked},
        )


# --- MFA enrolment ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MfaEnrolment:
    secret: str
    otpauth_uri: str


async def mfa_setup(session: AsyncSession, runtime: Runtime, user_id: uuid.UUID) -> MfaEnrolment:
    """A new TOTP secret, stored encrypted, waiting for a first code to enable it. Refused
    once MFA is on, so a stolen password-only session cannot replace the authenticator."""
    user = await users.get_user(session, user_id, for_update=True)
    if user.mfa_enabled:
        raise Conflict("MFA is already enabled for this account")
    secret = new_totp_secret()
    await users.seal_mfa_secret(session, runtime, user, secret)
    user.mfa_last_step = None
    account = (await users.view(session, runtime, user)).email
    await runtime.audit.record(session, "auth.mfa_setup", table=users.TABLE, record_id=user.id)
    return MfaEnrolment(secret=secret, otpauth_uri=totp_uri(secret, account, MFA_ISSUER))


async def mfa_enable(
    session: AsyncSession, runtime: Runtime, user_id: uuid.UUID, code: str
) -> None:
    """Turn MFA on once the user proves the authenticator works. The code is spent: it
    cannot be used again to log in."""
    user = await users.get_user(session, user_id, for_update=True)
    if user.mfa_enabled:
        raise Conflict("MFA is already enabled for this account")
    secret = await users.open_mfa_secret(session, runtime, user)
    if secret is None:
        raise Conflict("start MFA setup first")
    step = totp_match(secret, code, last_step=user.mfa_last_step)
    if step is None:
        raise ValidationFailed(
            "the code does not match; check the authenticator's clock and try again",
            audit={
                "action": "auth.mfa_enable",
                "outcome": "failure",
                "table": users.TABLE,
                "record_id": user.id,
                "details": {"reason": "code_mismatch"},
            },
        )
    user.mfa_enabled = True
    user.mfa_last_step = step
    await runtime.audit.record(session, "auth.mfa_enable", table=users.TABLE, record_id=user.id)


# --- deactivation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deactivation:
    user: User
    sessions_revoked: int
    tickets_reassigned: int


async def deactivate_account(
    runtime: Runtime, *, actor_id: uuid.UUID, user_id: uuid.UUID
) -> Deactivation:
    """Deactivate a user (their sessions end at once), then hand their open tickets on.

    The reassignment runs after the commit, so that an auto-assignment never picks the
    user again: each open ticket's workflow re-assigns it to the least-loaded active agent
    (or leaves it unassigned when none is left)."""
    async with runtime.database.transaction() as session:
        user, revoked = await users.deactivate(session, runtime, actor_id=actor_id, user_id=user_id)
    reassigned = await reassignment.reassign_open_tickets_of(runtime, user_id)
    return Deactivation(user=user, sessions_revoked=revoked, tickets_reassigned=reassigned)
