"""Routes: /api/v1/auth — registration, login, tokens, password reset, email verification,
MFA enrolment. The anonymous ones are listed in `api.app.PUBLIC_ROUTES` and rate-limited
per client IP (see `helpdesk.ratelimit`: shared through Redis when configured)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, Response

from api.deps import AnyUser, RuntimeDep, SessionDep, UnverifiedOk
from api.schemas.auth import (
    AcceptedOut,
    ForgotPasswordIn,
    LoginIn,
    MfaEnabledOut,
    MfaEnableIn,
    MfaSetupOut,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    ResendVerificationIn,
    ResetPasswordIn,
    StatusOut,
    TokenOut,
    VerifyEmailIn,
)
from helpdesk import ratelimit
from helpdesk.context import current_context
from helpdesk.errors import RateLimited
from helpdesk.runtime import Runtime
from helpdesk.services import auth, sessions, verification

router = APIRouter()

FORGOT_PASSWORD_ANSWER = (
    "If an account exists for this address, a link to reset its password is on its way."
)
RESEND_VERIFICATION_ANSWER = (
    "If an unconfirmed account exists for this address, a new confirmation link is on its way."
)


def per_ip_limit(bucket: str) -> Callable[[Runtime], Coroutine[Any, Any, None]]:
    """A dependency counting the caller's IP against the bucket's per-minute budget.

    It runs before the body is validated, so malformed floods are counted too."""

    async def dependency(runtime: RuntimeDep) -> None:
        verdict = await ratelimit.limiter(runtime, bucket).hit(current_context().ip or "unknown")
        if not verdict.allowed:
            raise RateLimited(
                "too many requests from this address; slow down",
                retry_after=verdict.retry_after,
                # A flood is audited once per window, not once per request.
                audit=(
                    {
                        "action": "auth.rate_limited",
                        "outcome": "denied",
                        "details": {"bucket": bucket},
                    }
                    if verdict.first_refusal
                    else None
                ),
            )

    return dependency


def _tokens(issued: sessions.IssuedTokens) -> TokenOut:
    return TokenOut(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        token_type="bearer",
        expires_in=issued.expires_in,
    )


@router.post(
    "/register",
    status_code=201,
    response_model=RegisteredOut,
    dependencies=[Depends(per_ip_limit("register"))],
)
async def register(body: RegisterIn, runtime: RuntimeDep) -> RegisteredOut:
    """Create an END_USER account and mail a verification link (409 if the address,
    normalised, already has an account)."""
    first_name, last_name = body.names()
    user = await verification.register(
        runtime,
        email=body.email,
        password=body.password,
        first_name=first_name,
        last_name=last_name,
        phone=body.phone,
    )
    return RegisteredOut(id=user.id, role=user.role, is_verified=False, email_verified=False)


@router.post("/login", response_model=TokenOut, dependencies=[Depends(per_ip_limit("login"))])
async def login(body: LoginIn, runtime: RuntimeDep) -> TokenOut:
    """Exchange email, password (and a TOTP code when MFA is on) for tokens. A session
    opened with a TOTP code is an MFA session, which administrative routes require."""
    ctx = current_context()
    issued = await auth.login(
        runtime,
        email=body.email,
        password=body.password,
        totp=body.totp,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )
    return _tokens(issued)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(principal: UnverifiedOk, runtime: RuntimeDep) -> Response:
    """End the caller's session: its access and refresh tokens stop working at once
    (an account that has not confirmed its email may do this too)."""
    # Its own transaction, not SessionDep: that one depends on a verified principal.
    async with runtime.database.transaction() as session:
        await auth.logout(session, runtime, principal.session.id)
    return Response(status_code=204)


@router.post("/refresh", response_model=TokenOut)
async def refresh(body: RefreshIn, runtime: RuntimeDep) -> TokenOut:
    """Rotate a refresh token. Presenting a spent one revokes its whole session."""
    return _tokens(await auth.refresh(runtime, body.refresh_token))


@router.post(
    "/forgot-password",
    status_code=202,
    response_model=AcceptedOut,
    dependencies=[Depends(per_ip_limit("forgot-password"))],
)
async def forgot_password(
    body: ForgotPasswordIn, runtime: RuntimeDep, background: BackgroundTasks
) -> AcceptedOut:
    """Always the same 202. For a known account a reset link is mailed; the mail goes out
    after the response so the answer takes as long whether the account exists or not."""
    pending = await auth.request_password_reset(runtime, body.email)
    if pending is not None:
        background.add_task(auth.send_quietly, runtime, pending.message)
    return AcceptedOut(status="accepted", message=FORGOT_PASSWORD_ANSWER)


@router.post(
    "/reset-password",
    response_model=StatusOut,
    dependencies=[Depends(per_ip_limit("reset-password"))],
)
async def reset_password(body: ResetPasswordIn, runtime: RuntimeDep) -> StatusOut:
    """Set a new password with a reset link's token (single use). Every session of the
    account ends and any lockout clears."""
    await auth.reset_password(runtime, body.token, body.new_password)
    return StatusOut(status="password_changed")


@router.post(
    "/verify-email",
    response_model=StatusOut,
    dependencies=[Depends(per_ip_limit("verify-email"))],
)
async def verify_email(body: VerifyEmailIn, runtime: RuntimeDep) -> StatusOut:
    """Confirm an email address with the token of its verification link."""
    await verification.verify_email(runtime, body.token)
    return StatusOut(status="verified")


@router.post(
    "/resend-verification",
    status_code=202,
    response_model=AcceptedOut,
    dependencies=[Depends(per_ip_limit("resend-verification"))],
)
async def resend_verification(
    body: ResendVerificationIn, runtime: RuntimeDep, background: BackgroundTasks
) -> AcceptedOut:
    """Always the same 202. For a known account that has not confirmed its address, a new
    verification link is mailed (earlier links stop working) after the response."""
    pending = await verification.resend_verification(runtime, body.email)
    if pending is not None:
        background.add_task(auth.send_quietly, runtime, pending.message)
    return AcceptedOut(status="accepted", message=RESEND_VERIFICATION_ANSWER)


@router.post("/mfa/setup", response_model=MfaSetupOut)
async def mfa_setup(principal: AnyUser, session: SessionDep, runtime: RuntimeDep) -> MfaSetupOut:
    """Start TOTP enrolment: a new secret (stored encrypted) and its otpauth URI for an
    authenticator app. 409 once MFA is enabled."""
    enrolment = await auth.mfa_setup(session, runtime, principal.id)
    return MfaSetupOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post("/mfa/enable", response_model=MfaEnabledOut)
async def mfa_enable(
    body: MfaEnableIn, principal: AnyUser, session: SessionDep, runtime: RuntimeDep
) -> MfaEnabledOut:
    """Confirm enrolment with a current code. Sessions opened from now on with a TOTP
    code are MFA sessions; this one is not (sign in again with a code)."""
    await auth.mfa_enable(session, runtime, principal.id, body.code)
    return MfaEnabledOut(mfa_enabled=True, message="MFA is on; sign in again with a one-time code")
