"""The authenticated caller, as every layer sees it (the API builds it per request from the
access token; services take it to decide what the caller may see and do)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from helpdesk.security import AccessClaims
from models.enums import STAFF_ROLES, Role
from models.user import AuthSession, User


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user: User
    session: AuthSession
    claims: AccessClaims

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def role(self) -> Role:
        return Role(self.user.role)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def mfa(self) -> bool:
        return self.session.mfa
