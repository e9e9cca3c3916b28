"""Request and response bodies of /api/v1/auth. Requests are strict: an unknown field
(a `role`, say) is a 422, so no caller can choose what the server decides."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from helpdesk.services.users import split_full_name

# Long enough to resist guessing; capped so that argon2 never hashes megabytes.
Password = Annotated[str, Field(min_length=12, max_length=256)]
OpaqueToken = Annotated[str, Field(min_length=16, max_length=128)]
TotpCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
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


class NamesIn(StrictModel):
    """The seed's `first_name` and `last_name`; `full_name` (the product's older field) is
    still accepted and split at its first space, but not together with the two."""

    first_name: PersonName | None = None
    last_name: PersonName | None = None
    full_name: FullName | None = Field(
        None,
        description="Deprecated: send first_name and last_name",
        json_schema_extra={"deprecated": True},
    )

    @model_validator(mode="after")
    def _one_way_to_name(self) -> NamesIn:
        if self.full_name is not None and ({"first_name", "last_name"} & self.model_fields_set):
            raise ValueError("send first_name and last_name, or full_name, not both")
        if "first_name" in self.model_fields_set and self.first_name is None:
            raise ValueError("first_name cannot be removed (last_name can)")
        return self

    def names(self) -> tuple[str | None, str | None]:
        """(first, last) as given, or split from `full_name`."""
        if self.full_name is not None:
            return split_full_name(self.full_name)
        return self.first_name, self.last_name


class RegisterIn(NamesIn):
    email: Email
    password: Password
    phone: Phone | None = None

    @model_validator(mode="after")
    def _named(self) -> RegisterIn:
        if self.first_name is None and self.full_name is None:
            raise ValueError("first_name is required")
        return self


class RegisteredOut(BaseModel):
    id: uuid.UUID
    role: str
    is_verified: bool
    email_verified: bool = Field(
        description="Deprecated: the same as is_verified", json_schema_extra={"deprecated": True}
    )


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


class ResendVerificationIn(StrictModel):
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
