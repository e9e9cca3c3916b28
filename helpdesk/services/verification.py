"""Registration and email verification: a new account is unverified until its link is
used, and an unverified account may only verify or ask for a new link (the gate is
`api.deps`: every other route answers 403 `email_unverified`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from helpdesk.email import EmailMessage
from helpdesk.errors import Conflict
from helpdesk.runtime import Runtime
from helpdesk.security import Passwords
from helpdesk.services import one_time_tokens, users
from helpdesk.services.auth import PendingMail, send_quietly
from models.enums import Role, TokenPurpose
from models.user import User


def _verification_mail(runtime: Runtime, to: str, token: str, token_id: object) -> EmailMessage:
    minutes = runtime.settings.one_time_token_ttl_seconds // 60
    return EmailMessage(
        to=to,
        subject="Confirm your email address",
        body=(
            "Welcome to the help desk. Confirm your email address with this link "
            f"(valid {minutes} minutes):\n"
            f"{one_time_tokens.link(runtime, 'verify-email', token)}\n"
        ),
        message_key=f"verify-email:{token_id}",
    )


async def register(
    runtime: Runtime,
    *,
    email: str,
    password: str,
    first_name: str | None,
    last_name: str | None,
    phone: str | None,
) -> User:
    """A new END_USER account (no caller ever chooses a role) and a verification mail."""
    passwords: Passwords = runtime.passwords
    password_hash = await asyncio.to_thread(passwords.hash, password)
    duplicate = Conflict(
        "an account with this email already exists",
        audit={
            "action": "auth.register",
            "outcome": "failure",
            "details": {"reason": "duplicate_email"},
        },
    )
    try:
        async with runtime.database.transaction() as session:
            try:
                user = await users.create_user(
                    session,
                    runtime,
                    email=email,
                    password=password,
                    first_name=first_name,
                    last_name=last_name,
                    phone=phone,
                    role=Role.END_USER,
                    password_hash=password_hash,
                )
            except Conflict:
                raise duplicate from None
            token, token_id = await one_time_tokens.issue(
                session, runtime, user.id, TokenPurpose.VERIFY_EMAIL
            )
            await runtime.audit.record(
                session,
                "auth.register",
                table=users.TABLE,
                record_id=user.id,
                actor_id=user.id,
                actor_role=user.role,
            )
    except SqlIntegrityError:
        # Two registrations of one address at the same moment: the unique blind index
        # refuses the second at commit.
        raise duplicate from None
    await send_quietly(runtime, _verification_mail(runtime, email.strip(), token, token_id))
    return user


async def verify_email(runtime: Runtime, token: str) -> None:
    """Confirm the address a verification link was sent to."""
    async with runtime.database.transaction() as session:
        user = await one_time_tokens.consume(session, token, TokenPurpose.VERIFY_EMAIL)
        if user.email_verified_at is None:
            user.email_verified_at = datetime.now(UTC)
        await runtime.audit.record(
            session,
            "auth.email_verified",
            table=users.TABLE,
            record_id=user.id,
            actor_id=user.id,
            actor_role=user.role,
        )


def _no_resend_reason(user: User | None) -> str | None:
    """Why no new link goes out (audited, never told to the caller), or None."""
    if user is None:
        return "unknown_account"
    if not user.is_active:
        return "inactive"
    if user.email_verified_at is not None:
        return "already_verified"
    return None


async def resend_verification(runtime: Runtime, email: str) -> PendingMail | None:
    """A new verification link (the older ones stop working) for a known, active,
    unverified account; nothing otherwise, and the caller answers the same either way."""
    async with runtime.database.transaction() as session:
        user = await users.find_by_email(session, runtime, email)
        reason = _no_resend_reason(user)
        if user is None or reason is not None:
            await runtime.audit.record(
                session,
                "auth.verification_resent",
                outcome="failure",
                table=users.TABLE,
                record_id=user.id if user is not None else None,
                details={"reason": reason},
            )
            return None
        token, token_id = await one_time_tokens.issue(
            session, runtime, user.id, TokenPurpose.VERIFY_EMAIL
        )
        address = (await users.view(session, runtime, user)).email
        await runtime.audit.record(
            session, "auth.verification_resent", table=users.TABLE, record_id=user.id
        )
    return PendingMail(_verification_mail(runtime, address, token, token_id))
