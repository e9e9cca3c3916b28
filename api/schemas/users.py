"""Request and response bodies of /api/v1/users (strict requests; no password hashes or
MFA secrets in any response)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.auth import NamesIn, Phone, StrictModel
from helpdesk.services.users import UserView
from models.audit import AuditLog
from models.enums import Role
from models.user import User


class _UserOut(BaseModel):
    """The fields of a user every view shares (the seed's columns)."""

    id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    full_name: str | None = Field(description="first_name and last_name joined (compatibility)")
    role: str
    is_active: bool
    is_verified: bool = Field(description="The email address was confirmed with its link")

    @classmethod
    def _common(cls, view: UserView) -> dict[str, Any]:
        return {
            "id": view.id,
            "email": view.email,
            "first_name": view.first_name,
            "last_name": view.last_name,
            "full_name": view.full_name,
            "role": view.role,
            "is_active": view.is_active,
            "is_verified": view.email_verified,
        }


class ProfileOut(_UserOut):
    """The caller's own profile, decrypted."""

    phone: str | None
    email_verified: bool = Field(
        description="Deprecated: the same as is_verified", json_schema_extra={"deprecated": True}
    )
    mfa_enabled: bool
    last_login_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, view: UserView) -> ProfileOut:
        return cls(
            **cls._common(view),
            phone=view.phone,
            email_verified=view.email_verified,
            mfa_enabled=view.mfa_enabled,
            last_login_at=view.last_login_at,
            created_at=view.created_at,
        )


class ProfileUpdateIn(NamesIn):
    """Fields to change; an absent field stays as it is. `phone: null` removes the phone,
    `last_name: null` the last name."""

    phone: Phone | None = None


class AgentOut(_UserOut):
    """A support agent as an assignment picker shows them."""

    @classmethod
    def of(cls, view: UserView) -> AgentOut:
        return cls(**cls._common(view))


class UserAdminOut(_UserOut):
    email_verified: bool = Field(
        description="Deprecated: the same as is_verified", json_schema_extra={"deprecated": True}
    )
    mfa_enabled: bool
    last_login_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, view: UserView) -> UserAdminOut:
        return cls(
            **cls._common(view),
            email_verified=view.email_verified,
            mfa_enabled=view.mfa_enabled,
            last_login_at=view.last_login_at,
            created_at=view.created_at,
        )


class UserPage(BaseModel):
    items: list[UserAdminOut]
    page: int
    page_size: int
    total: int


class RoleChangeIn(StrictModel):
    role: Role


class UserStateOut(BaseModel):
    """A user's account state without any PHI (answers of administrative commands)."""

    id: uuid.UUID
    role: str
    is_active: bool
    sessions_revoked: int | None = None

    @classmethod
    def of(cls, user: User, sessions_revoked: int | None = None) -> UserStateOut:
        return cls(
            id=user.id, role=user.role, is_active=user.is_active, sessions_revoked=sessions_revoked
        )


class AuditRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    action: str
    table_name: str | None
    record_id: str | None
    outcome: str
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, row: AuditLog) -> AuditRowOut:
        return cls.model_validate(row)


class AuditPage(BaseModel):
    items: list[AuditRowOut]
    page: int
    page_size: int
    total: int
