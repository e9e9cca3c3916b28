"""TOTP against RFC 6238 vectors, replay refusal, access-token claims."""

import base64
import time
import uuid

import jwt
import pytest

from helpdesk.errors import AuthenticationFailed
from helpdesk.security import AccessTokens, Passwords, totp_at, totp_match, totp_now

# RFC 6238 Appendix B, SHA-1 secret "12345678901234567890" (8-digit codes; we use 6).
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("unix_time", "expected8"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
    ],
)
def test_totp_matches_rfc6238_vectors(unix_time, expected8):
    assert totp_at(RFC_SECRET, unix_time // 30) == expected8[-6:]


def test_totp_accepts_one_step_of_drift_and_never_twice():
    now = time.time()
    code = totp_now(RFC_SECRET, now - 30)
    step = totp_match(RFC_SECRET, code, last_step=None, at=now)
    assert step is not None
    assert totp_match(RFC_SECRET, code, last_step=step, at=now) is None
    old = totp_now(RFC_SECRET, now - 90)
    assert totp_match(RFC_SECRET, old, last_step=None, at=now) is None
    assert totp_match(RFC_SECRET, "12ab56", last_step=None, at=now) is None


def test_passwords_hash_verify_and_unknown_user_is_false():
    passwords = Passwords(time_cost=1, memory_cost=8192)
    stored = passwords.hash("s3cret-pass")
    assert passwords.verify(stored, "s3cret-pass")
    assert not passwords.verify(stored, "wrong")
    assert not passwords.verify(None, "s3cret-pass")
    assert Passwords(time_cost=2, memory_cost=8192).needs_rehash(stored)


def test_access_token_round_trip_and_rejections(settings):
    tokens = AccessTokens(settings)
    user, sid = uuid.uuid4(), uuid.uuid4()
    token = tokens.issue(user, sid, "END_USER", mfa=False)
    claims = tokens.decode(token)
    assert (claims.user_id, claims.session_id, claims.mfa) == (user, sid, False)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert {"exp", "iat", "jti", "sid", "iss", "aud", "amr", "typ"} <= raw.keys()
    assert raw["exp"] - raw["iat"] <= 900

    key = settings.secret_bytes("jwt_secret")
    forged_none = jwt.encode(raw, None, algorithm="none")  # type: ignore[arg-type]
    wrong_alg = jwt.encode(raw, key + b"x" * 32, algorithm="HS512")
    expired = jwt.encode({**raw, "exp": int(time.time()) - 5}, key, algorithm="HS256")
    missing = jwt.encode({k: v for k, v in raw.items() if k != "sid"}, key, algorithm="HS256")
    refresh_typed = jwt.encode({**raw, "typ": "refresh"}, key, algorithm="HS256")
    other_aud = jwt.encode({**raw, "aud": "someone-else"}, key, algorithm="HS256")
    for bad in (forged_none, wrong_alg, expired, missing, refresh_typed, other_aud, "garbage"):
        with pytest.raises(AuthenticationFailed):
            tokens.decode(bad)
