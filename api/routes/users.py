"""Routes: /api/v1/users — one's own profile, the agent list for managers, and account
administration (list, role change, deactivation, a user's audit trail) for administrators.

Every read of decrypted contact data is audited (a PHI read); audit rows name ids and
field names, never values."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Admin, AnyUser, ManagerOrAdmin, RuntimeDep, SessionDep
from api.schemas.users import (
    AgentOut,
    AuditPage,
    AuditRowOut,
    ProfileOut,
    ProfileUpdateIn,
    RoleChangeIn,
    UserAdminOut,
    UserPage,
    UserStateOut,
)
from helpdesk.services import auth, users
from models.enums import Role

router = APIRouter()

Page = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")]
PageSize = Annotated[
    int, Query(ge=1, description="Items per page (capped at the max_page_size setting)")
]


@router.get("/profile", response_model=ProfileOut)
async def read_profile(principal: AnyUser, session: SessionDep, runtime: RuntimeDep) -> ProfileOut:
    """The caller's profile, decrypted."""
    view = await users.view(session, runtime, principal.user)
    await runtime.audit.record(
        session, "user.profile_read", table=users.TABLE, record_id=principal.id
    )
    return ProfileOut.of(view)


@router.put("/profile", response_model=ProfileOut)
async def update_profile(
    body: ProfileUpdateIn, principal: AnyUser, session: SessionDep, runtime: RuntimeDep
) -> ProfileOut:
    """Change one's names or phone (`phone: null` removes the phone, `last_name: null`
    the last name)."""
    user = await users.get_user(session, principal.id, for_update=True)
    first_name, last_name = body.names()
    given = body.model_fields_set
    changed = await users.set_contact(
        session,
        runtime,
        user,
        first_name=first_name,
        last_name=last_name,
        clear_last_name="last_name" in given and body.last_name is None,
        phone=body.phone,
        clear_phone="phone" in given and body.phone is None,
    )
    if changed:
        user.updated_by = principal.id
        await runtime.audit.record(
            session,
            "user.profile_update",
            table=users.TABLE,
            record_id=user.id,
            details={"fields": changed},
        )
    return ProfileOut.of(await users.view(session, runtime, user))


# The product's first paths, kept for existing clients; the seed names /profile.
_ALIAS = "Deprecated alias of /api/v1/users/profile (kept for existing clients)."
router.add_api_route(
    "/me",
    read_profile,
    methods=["GET"],
    response_model=ProfileOut,
    deprecated=True,
    summary="Read Profile (deprecated alias)",
    description=_ALIAS,
)
router.add_api_route(
    "/me",
    update_profile,
    methods=["PUT"],
    response_model=ProfileOut,
    deprecated=True,
    summary="Update Profile (deprecated alias)",
    description=_ALIAS,
)


@router.get("/agents", response_model=list[AgentOut])
async def list_agents(
    principal: ManagerOrAdmin, session: SessionDep, runtime: RuntimeDep
) -> list[AgentOut]:
    """Active support agents (for assignment), with names, email and role."""
    agents = await users.views(session, runtime, await users.active_agents(session))
    await runtime.audit.record(
        session,
        "user.list_read",
        table=users.TABLE,
        details={"role": Role.SUPPORT_AGENT.value, "count": len(agents)},
    )
    return [AgentOut.of(a) for a in agents]


@router.get("", response_model=UserPage)
async def list_users(
    principal: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
    page: Page = 1,
    page_size: PageSize = 50,
    role: Role | None = None,
    active: bool | None = None,
) -> UserPage:
    """Every user, a page at a time (administrators)."""
    size = min(page_size, runtime.settings.max_page_size)
    rows, total = await users.list_page(
        session, offset=(page - 1) * size, limit=size, role=role, active=active
    )
    views = await users.views(session, runtime, rows)
    await runtime.audit.record(
        session, "user.list_read", table=users.TABLE, details={"count": len(views), "page": page}
    )
    return UserPage(
        items=[UserAdminOut.of(v) for v in views], page=page, page_size=size, total=total
    )


@router.put("/{user_id}/role", response_model=UserStateOut)
async def change_role(
    user_id: uuid.UUID,
    body: RoleChangeIn,
    principal: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> UserStateOut:
    """Give a user another role; their sessions end. Administrators cannot change their
    own role (409)."""
    user = await users.change_role(
        session, runtime, actor_id=principal.id, user_id=user_id, role=body.role
    )
    return UserStateOut.of(user)


@router.get("/{user_id}/audit-log", response_model=AuditPage)
async def user_audit_log(
    user_id: uuid.UUID,
    principal: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
    page: Page = 1,
    page_size: PageSize = 50,
) -> AuditPage:
    """What a user did and what was done to their account, newest first."""
    await users.get_user(session, user_id)
    size = min(page_size, runtime.settings.max_page_size)
    rows, total = await users.audit_rows_of(session, user_id, offset=(page - 1) * size, limit=size)
    await runtime.audit.record(
        session,
        "audit.read",
        table=users.TABLE,
        record_id=user_id,
        details={"count": len(rows), "page": page},
    )
    return AuditPage(
        items=[AuditRowOut.of(r) for r in rows], page=page, page_size=size, total=total
    )


@router.post("/{user_id}/deactivate", response_model=UserStateOut)
async def deactivate(user_id: uuid.UUID, principal: Admin, runtime: RuntimeDep) -> UserStateOut:
    """Deactivate an account: every session ends at once, open tickets are handed on.
    Administrators cannot deactivate themselves (409)."""
    done = await auth.deactivate_account(runtime, actor_id=principal.id, user_id=user_id)
    return UserStateOut.of(done.user, done.sessions_revoked)
