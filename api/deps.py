"""Dependencies: the unit-of-work session, the authenticated principal, role gates.

Routes declare who may call them with one of the `Annotated` aliases below; nothing is
reachable anonymously unless its router says so explicitly (see `api.app.PUBLIC_ROUTES`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.context import bind_actor
from helpdesk.errors import (
    AuthenticationFailed,
    EmailUnverified,
    MfaRequired,
    PermissionDenied,
)
from helpdesk.principal import Principal
from helpdesk.runtime import Runtime
from helpdesk.services import sessions
from models.enums import PRIVILEGED_ROLES, Role


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    # hop on every request for what is an attribute read.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# Declared as FastAPI's HTTP bearer scheme so that the OpenAPI document names it (the
# Authorize button of /docs) and marks every operation that needs it; a missing or
# malformed header is our own 401, in the one JSON error shape.
BEARER = HTTPBearer(
    scheme_name="BearerAuth",
    bearerFormat="JWT",
    description="An access token from POST /api/v1/auth/login (or /auth/refresh)",
    auto_error=False,
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials.strip():
        raise AuthenticationFailed("authentication required")
    return credentials.credentials.strip()


UNVERIFIED = "confirm your email address first: use the link we sent, or ask for a new one"


async def authenticate_token(
    runtime: Runtime, token: str, *, allow_unverified: bool = False
) -> Principal:
    """Validate an access token against its server-side session (shared with Socket.IO).

    An account that has not confirmed its email is refused (403 `email_unverified`)
    unless the caller allows it: such an account may only verify or ask for a new link."""
    claims = sessions.access_tokens(runtime).decode(token)
    principal = await sessions.load_active(runtime, claims)
    bind_actor(principal.user.id, principal.user.role, principal.session.id)
    if principal.user.email_verified_at is None and not allow_unverified:
        raise EmailUnverified(
            UNVERIFIED,
            details={"resend": "/api/v1/auth/resend-verification"},
            audit={
                "action": "access.denied",
                "outcome": "denied",
                "details": {"why": "email_unverified"},
            },
        )
    return principal


async def get_principal(
    request: Request, runtime: RuntimeDep, credentials: BearerCredentials
) -> Principal:
    principal = await authenticate_token(runtime, _bearer(credentials))
    request.state.principal = principal
    return principal


async def get_principal_even_unverified(
    request: Request, runtime: RuntimeDep, credentials: BearerCredentials
) -> Principal:
    """The caller, even before they confirmed their email (for logout only)."""
    principal = await authenticate_token(runtime, _bearer(credentials), allow_unverified=True)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
UnverifiedOk = Annotated[Principal, Depends(get_principal_even_unverified)]


async def get_session(runtime: RuntimeDep, _: CurrentPrincipal) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent.

    It depends on the principal so that authentication (which may take the SQLite writer
    lock itself, to stamp or end the session) always finishes before the request's
    transaction takes that lock, whatever order a route lists its dependencies in; the
    other way round, the request would wait for itself (issue 11's wedge). Every route
    with a session is authenticated."""
    async with runtime.database.transaction() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def _denied(principal: Principal, why: str, request: Request) -> PermissionDenied:
    return PermissionDenied(
        "you may not do this",
        audit={
            "action": "access.denied",
            "outcome": "denied",
            "details": {
                "route": request.scope.get("path", ""),
                "method": request.method,
                "why": why,
            },
        },
    )


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only the given roles (403 and a denied audit row otherwise)."""
    allowed = frozenset(roles)

    async def dependency(request: Request, principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise _denied(principal, "role", request)
        return principal

    return dependency


def require_privileged(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Administrative gate: role, TOTP-verified session, and the IP allowlist."""
    allowed = frozenset(roles)

    async def dependency(
        request: Request, principal: CurrentPrincipal, runtime: RuntimeDep
    ) -> Principal:
        if principal.role not in allowed:
            raise _denied(principal, "role", request)
        if not _ip_allowed(request, runtime.settings.admin_ip_allowlist):
            raise _denied(principal, "ip_allowlist", request)
        if (
            runtime.settings.require_mfa_for_privileged
            and principal.role in PRIVILEGED_ROLES
            and not principal.mfa
        ):
            raise MfaRequired(
                "this route needs a session verified with a TOTP code",
                audit={
                    "action": "access.denied",
                    "outcome": "denied",
                    "details": {"route": request.scope.get("path", ""), "why": "mfa"},
                },
            )
        return principal

    return dependency


def _ip_allowed(request: Request, allowlist: list[str]) -> bool:
    ip = request.scope.get("state", {}).get("client_ip")
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowlist)


AnyUser = CurrentPrincipal
Staff = Annotated[
    Principal,
    Depends(require_roles(Role.SUPPORT_AGENT, Role.MANAGER, Role.ADMINISTRATOR)),
]
ManagerOrAdmin = Annotated[Principal, Depends(require_privileged(Role.MANAGER, Role.ADMINISTRATOR))]
Admin = Annotated[Principal, Depends(require_privileged(Role.ADMINISTRATOR))]


def now() -> datetime:
    return datetime.now(UTC)
