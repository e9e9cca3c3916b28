"""Credentials: argon2id passwords, access JWTs, opaque tokens, TOTP (RFC 6238)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from helpdesk.errors import AuthenticationFailed
from helpdesk.settings import Settings

JWT_ALGORITHM = "HS256"
ACCESS_TYPE = "access"
_REQUIRED_CLAIMS = ["exp", "iat", "jti", "sid", "sub", "iss", "aud", "typ", "amr"]


class Passwords:
    """argon2id hashing; `needs_rehash` lets login upgrade parameters transparently."""

    def __init__(self, time_cost: int, memory_cost: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=2)
        # A real hash to verify against for unknown users, so timing does not tell.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    mfa: bool
    jti: str
    expires_at: datetime


class AccessTokens:
    """Short-lived HS256 access tokens with a pinned algorithm and required claims."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_bytes("jwt_secret")
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._ttl = settings.access_token_ttl_seconds

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID, role: str, mfa: bool) -> str:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "sid": str(session_id),
            "role": role,
            "amr": ["pwd", "otp"] if mfa else ["pwd"],
            "typ": ACCESS_TYPE,
            "jti": secrets.token_urlsafe(16),
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self._ttl)).timestamp()),
            "iss": self._issuer,
            "aud": self._audience,
        }
        return jwt.encode(claims, self._key, algorithm=JWT_ALGORITHM)

    def decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[JWT_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED_CLAIMS},
            )
            if claims["typ"] != ACCESS_TYPE:
                raise AuthenticationFailed("not an access token")
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                role=str(claims.get("role", "")),
                mfa="otp" in claims["amr"],
                jti=claims["jti"],
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailed("invalid or expired access token") from exc


def new_opaque_token() -> tuple[str, str]:
    """A 256-bit URL-safe token and the SHA-256 hex digest that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits), by pyotp ----------------------

TOTP_STEP_SECONDS = 30
TOTP_DIGITS = 6


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS)


def totp_at(secret: str, step: int) -> str:
    """The code of time step `step` (unix time // 30)."""
    return _totp(secret).generate_otp(step)


def totp_now(secret: str, at: float | None = None) -> str:
    return _totp(secret).at(time.time() if at is None else at)


def totp_match(
    secret: str, code: str, *, last_step: int | None, at: float | None = None
) -> int | None:
    """The step a code matches (±1 step of drift), or None. A step at or before
    `last_step` never matches again, so no code is accepted twice (pyotp's `verify` says
    only whether a code matches, not at which step, so the replay guard stays here)."""
    if not (code.isdigit() and len(code) == TOTP_DIGITS):
        return None
    totp = _totp(secret)
    now_step = totp.timecode(datetime.fromtimestamp(time.time() if at is None else at, UTC))
    for step in (now_step - 1, now_step, now_step + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def totp_uri(secret: str, account: str, issuer: str = "Helpdesk") -> str:
    return _totp(secret).provisioning_uri(name=account, issuer_name=issuer)
