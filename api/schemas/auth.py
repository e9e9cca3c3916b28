"""Request and response bodies of /api/v1/auth. Requests are strict: an unknown field
(a `role`, say) is a 422, so no caller can choose what the server decides."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Long enough to resist guessing; capped so that argon2 never hashes megabytes.
Password = Annotated[str, Field(min_length=12, max_length=256)]
OpaqueToken = Annotated[str, Field(min_length=16, max_length=128)]
TotpCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,31}$")


def _email(value: str) -> str:
    # Syntax only (no DNS); reserved test domains allowed. Uniqueness is decided on the
    # normalised form by the blind index.
    value = value.strip()
    try:
        validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError("not a valid email address") from exc
    return value


def _phone(value: str) -> str:
    value = value.strip()
    if not _PHONE.match(value):
        raise ValueError("not a valid phone number")
    return value


Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]
# Login takes any string: a malformed address simply fails like an unknown one.
LoginEmail = Annotated[str, Field(min_length=1, max_length=254)]
Phone = Annotated[str, Field(max_length=32), AfterValidator(_phone)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(StrictModel):
    email: Email
    password: Password
    full_name: FullName
    phone: Phone | None = None


class RegisteredOut(BaseModel):
    id: uuid.UUID
    role: str
    email_verified: bool


class LoginIn(StrictModel):
    email: LoginEmail
    password: Annotated[str, Field(min_length=1, max_length=256)]
    totp: TotpCode | None = None


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class RefreshIn(StrictModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=128)]


class ForgotPasswordIn(StrictModel):
    email: LoginEmail


class AcceptedOut(BaseModel):
    status: str = "accepted"
    message: str


class ResetPasswordIn(StrictModel):
    token: OpaqueToken
    new_password: Password


class VerifyEmailIn(StrictModel):
    token: OpaqueToken


class StatusOut(BaseModel):
    status: str


class MfaSetupOut(BaseModel):
    secret: str
    otpauth_uri: str


class MfaEnableIn(StrictModel):
    code: TotpCode


class MfaEnabledOut(BaseModel):
    mfa_enabled: bool
    message: str
