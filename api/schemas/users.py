"""Request and response bodies of /api/v1/users (strict requests; no password hashes or
MFA secrets in any response)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from api.schemas.auth import FullName, Phone, StrictModel
from helpdesk.services.users import UserView
from models.audit import AuditLog
from models.enums import Role
from models.user import User


class ProfileOut(BaseModel):
    """The caller's own profile, decrypted."""

    id: uuid.UUID
    email: str
    full_name: str | None
    phone: str | None
    role: str
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, view: UserView) -> ProfileOut:
        return cls(
            id=view.id,
            email=view.email,
            full_name=view.full_name,
            phone=view.phone,
            role=view.role,
            email_verified=view.email_verified,
            mfa_enabled=view.mfa_enabled,
            created_at=view.created_at,
        )


class ProfileUpdateIn(StrictModel):
    """Fields to change; an absent field stays as it is, `phone: null` removes the phone."""

    full_name: FullName | None = None
    phone: Phone | None = None


class AgentOut(BaseModel):
    id: uuid.UUID
    full_name: str | None
    email: str


class UserAdminOut(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str | None
    role: str
    is_active: bool
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, view: UserView) -> UserAdminOut:
        return cls(
            id=view.id,
            email=view.email,
            full_name=view.full_name,
            role=view.role,
            is_active=view.is_active,
            email_verified=view.email_verified,
            mfa_enabled=view.mfa_enabled,
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
