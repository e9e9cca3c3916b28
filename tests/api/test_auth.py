"""Authentication through the API: registration, login, lockout, rate limits, tokens,
password reset, email verification, MFA, idle timeout (and the same on PostgreSQL)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from sqlalchemy import select, update

from api.app import create_app, prepare_runtime
from helpdesk.ratelimit import (
    RequestLimiter,
    UnknownAccountLockouts,
    lockout_duration,
    storage_for,
)
from helpdesk.runtime import build_runtime
from helpdesk.security import Passwords, hash_token, totp_at, totp_now
from models.audit import AuditLog
from models.enums import Role
from models.user import AuthSession, OneTimeToken, User
from tests.conftest import make_settings
from tests.support.auth import (
    API,
    audit_rows,
    bearer,
    error_of,
    link_token,
    load_user,
    login,
    mail_to,
    register,
    unique_email,
)
from tests.support.factories import PASSWORD, make_user

NEW_PASSWORD = "a brand new passphrase 77"


# --- helpers shared with the other auth/users test modules -----------------------------


# --- registration and email verification -----------------------------------------------


async def test_register_makes_an_end_user_and_mails_a_verification_link(client, runtime):
    email = unique_email()
    response = await register(client, email, phone="+1 555 0100")
    assert response.status_code == 201
    assert response.json()["role"] == "END_USER"
    assert response.json()["email_verified"] is False

    [message] = mail_to(runtime, email)
    assert f"{runtime.settings.public_base_url}/verify-email#token=" in message["body"]
    assert "Pat Example" not in message["body"] + message["subject"]
    token = link_token(message)

    verified = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert verified.status_code == 200
    assert verified.json() == {"status": "verified"}
    again = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "validation_failed"

    tokens = (await login(client, email)).json()
    me = await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email_verified"] is True
    assert [r.outcome for r in await audit_rows(runtime, "auth.register")] == ["success"]
    assert len(await audit_rows(runtime, "auth.email_verified")) == 1


async def test_registration_cannot_choose_a_role_or_send_unknown_fields(client, runtime):
    email = unique_email()
    for extra in ({"role": "ADMINISTRATOR"}, {"is_active": True}, {"mfa_enabled": True}):
        response = await register(client, email, **extra)
        assert response.status_code == 422, extra
        assert response.json()["error"]["details"]["errors"][0]["type"] == "extra_forbidden"
    async with runtime.database.transaction() as session:
        assert await session.scalar(select(User.id)) is None


async def test_register_refuses_a_duplicate_normalised_email(client, runtime):
    local = uuid.uuid4().hex[:8]
    assert (await register(client, f"a{local}@x.example.test")).status_code == 201
    second = await register(client, f"  A{local}@X.Example.TEST ")
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"
    outcomes = [r.outcome for r in await audit_rows(runtime, "auth.register")]
    assert outcomes == ["success", "failure"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-address"),
        ("password", "Sh0rt#pw"),
        ("full_name", "   "),
        ("phone", "call me maybe"),
        ("password", "x" * 300),
    ],
)
async def test_register_validates_fields_without_echoing_them(client, field, value):
    body = {"email": unique_email(), "password": PASSWORD, "full_name": "Pat", field: value}
    response = await client.post(f"{API}/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["loc"][-1] == field
    if value.strip():
        assert value not in response.text


async def test_a_verification_token_is_not_a_reset_token(client, runtime):
    email = unique_email()
    await register(client, email)
    token = link_token(mail_to(runtime, email)[0])
    response = await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 422
    assert (await login(client, email, NEW_PASSWORD)).status_code == 401


# --- login ------------------------------------------------------------------------------


async def test_login_returns_tokens_that_work_and_is_audited(client, runtime):
    actor = await make_user(runtime, Role.END_USER)
    response = await login(client, actor.email.upper())  # the address is normalised
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == runtime.settings.access_token_ttl_seconds
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    me = await client.get(f"{API}/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == str(actor.id)
    [row] = await audit_rows(runtime, "auth.login")
    assert (row.outcome, row.actor_id, row.ip) == ("success", actor.id, "127.0.0.1")


async def test_failed_login_is_audited_with_ip_and_user_agent(client, runtime):
    actor = await make_user(runtime)
    response = await client.post(
        f"{API}/auth/login",
        json={"email": actor.email, "password": "wrong password 1"},
        headers={"User-Agent": "audit-probe/1.0"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    [row] = await audit_rows(runtime, "auth.login")
    assert row.outcome == "failure"
    assert row.ip == "127.0.0.1"
    assert row.user_agent == "audit-probe/1.0"
    assert row.record_id == str(actor.id)
    assert row.actor_id is None
    assert "wrong password" not in str(row.details)
    assert (await load_user(runtime, actor.id)).failed_logins == 1


async def test_unknown_email_gets_the_same_answer_as_a_wrong_password(client, runtime):
    actor = await make_user(runtime)
    wrong = await login(client, actor.email, "not the password 9")
    unknown = await login(client, unique_email("nobody"), "not the password 9")
    assert wrong.status_code == unknown.status_code == 401
    assert error_of(wrong) == error_of(unknown)
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    malformed = await login(client, "no-at-sign", "not the password 9")
    assert malformed.status_code == 401


@pytest.mark.parametrize(
    "settings", [{"argon2_time_cost": 2, "argon2_memory_cost": 32768}], indirect=True
)
async def test_unknown_email_costs_a_password_verification_too(client, runtime):
    """Timing: an unknown email verifies against a dummy hash of the same parameters, so
    its answer takes about as long as a wrong password's."""
    actor = await make_user(runtime)

    async def timed(email: str) -> float:
        start = time.perf_counter()
        assert (await login(client, email, "definitely wrong 1")).status_code == 401
        return time.perf_counter() - start

    wrong, unknown = [], []
    for _ in range(4):  # below the lockout threshold
        wrong.append(await timed(actor.email))
        unknown.append(await timed(unique_email("ghost")))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (wrong, unknown)


async def test_lockout_answers_429_even_to_the_right_password_and_reset_clears_it(client, runtime):
    actor = await make_user(runtime)
    limit = runtime.settings.login_max_failures
    for _ in range(limit):
        assert (await login(client, actor.email, "wrong password 12")).status_code == 401
    locked = await login(client, actor.email, PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "rate_limited"
    retry = int(locked.headers["retry-after"])
    assert (
        runtime.settings.login_lockout_seconds - 5
        <= retry
        <= (runtime.settings.login_lockout_seconds)
    )
    [lockout] = await audit_rows(runtime, "auth.lockout")
    assert lockout.record_id == str(actor.id)
    reasons = [r.details["reason"] for r in await audit_rows(runtime, "auth.login")]
    assert reasons == ["bad_password"] * limit + ["locked"]

    # Lockout never blocks a reset, and the reset lifts it.
    forgot = await client.post(f"{API}/auth/forgot-password", json={"email": actor.email})
    assert forgot.status_code == 202
    token = link_token(mail_to(runtime, actor.email)[-1])
    reset = await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 200
    assert (await login(client, actor.email, NEW_PASSWORD)).status_code == 200
    user = await load_user(runtime, actor.id)
    assert (user.failed_logins, user.lockouts, user.locked_until) == (0, 0, None)


async def test_lockout_backs_off_each_time(client, runtime):
    actor = await make_user(runtime)
    base = runtime.settings.login_lockout_seconds
    retries = []
    for _ in range(2):
        for _ in range(runtime.settings.login_max_failures):
            assert (await login(client, actor.email, "wrong password 12")).status_code == 401
        locked = await login(client, actor.email, PASSWORD)
        assert locked.status_code == 429
        retries.append(int(locked.headers["retry-after"]))
        async with runtime.database.transaction() as session:  # let the lock run out
            await session.execute(
                update(User)
                .where(User.id == actor.id)
                .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
            )
    assert base - 5 <= retries[0] <= base
    assert 2 * base - 5 <= retries[1] <= 2 * base
    assert (await login(client, actor.email, PASSWORD)).status_code == 200


async def test_an_unknown_email_locks_like_a_real_account(client):
    ghost = unique_email("ghost")
    answers = [(await login(client, ghost, "whatever pass 1")).status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]


@pytest.mark.parametrize("settings", [{"rate_limit_per_minute": 3}], indirect=True)
async def test_per_ip_rate_limit_on_login_register_and_forgot_password(client, runtime):
    for _ in range(3):
        assert (await login(client, unique_email(), "whatever pass 1")).status_code == 401
    limited = await login(client, unique_email(), "whatever pass 1")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Counted before validation: a malformed body spends the budget too.
    assert (await client.post(f"{API}/auth/login", json={})).status_code == 429

    for _ in range(3):
        assert (await register(client, unique_email())).status_code == 201
    assert (await register(client, unique_email())).status_code == 429
    for _ in range(3):
        forgot = await client.post(f"{API}/auth/forgot-password", json={"email": "a@b.test"})
        assert forgot.status_code == 202
    forgot = await client.post(f"{API}/auth/forgot-password", json={"email": "a@b.test"})
    assert forgot.status_code == 429

    # Another address has its own budget.
    other = httpx.ASGITransport(app=client.app, client=("198.51.100.20", 4000))
    async with httpx.AsyncClient(transport=other, base_url="http://testserver") as elsewhere:
        assert (await login(elsewhere, unique_email(), "whatever pass 1")).status_code == 401
    # One audit row per flood and bucket, not one per refused request.
    buckets = [r.details["bucket"] for r in await audit_rows(runtime, "auth.rate_limited")]
    assert sorted(buckets) == ["forgot-password", "login", "register"]


async def test_login_rehashes_when_argon2_parameters_change(client, runtime):
    actor = await make_user(runtime)
    before = (await load_user(runtime, actor.id)).password_hash
    assert "t=1" in before
    runtime.passwords = Passwords(time_cost=2, memory_cost=8192)
    assert (await login(client, actor.email)).status_code == 200
    after = (await load_user(runtime, actor.id)).password_hash
    assert after != before
    assert "t=2" in after
    [row] = await audit_rows(runtime, "auth.login")
    assert row.details["rehashed"] is True
    # The new hash verifies; a further login does not rehash again.
    assert (await login(client, actor.email)).status_code == 200
    assert (await load_user(runtime, actor.id)).password_hash == after


async def test_inactive_user_cannot_log_in(client, runtime):
    actor = await make_user(runtime)
    async with runtime.database.transaction() as session:
        await session.execute(update(User).where(User.id == actor.id).values(is_active=False))
    response = await login(client, actor.email)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid email or password"


async def test_moving_window_limiter_refuses_past_the_budget_and_reopens():
    limiter = RequestLimiter(MemoryStorage(), f"t{uuid.uuid4().hex}", limit=2, window=2)
    assert (await limiter.hit("ip")).allowed
    assert (await limiter.hit("ip")).allowed
    refused = await limiter.hit("ip")
    assert (refused.allowed, refused.first_refusal) == (False, True)
    assert 1 <= refused.retry_after <= 2
    assert (await limiter.hit("ip")).first_refusal is False  # a flood is audited once
    assert (await limiter.hit("other")).allowed
    await asyncio.sleep(2.1)
    assert (await limiter.hit("ip")).allowed  # the first hits left the window


async def test_replicas_share_one_budget_through_redis():
    """Two API replicas (two limiters, two connections) count against one budget."""
    redis_url = "redis://127.0.0.1:6379/0"
    try:
        import redis.asyncio as redis_asyncio

        probe = redis_asyncio.from_url(redis_url)
        await probe.ping()
        await probe.aclose()
    except Exception:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (the machine starts it)")
    bucket = f"t{uuid.uuid4().hex}"
    first = RequestLimiter(storage_for(redis_url), bucket, limit=3)
    second = RequestLimiter(storage_for(redis_url), bucket, limit=3)
    verdicts = [await limiter.hit("10.0.0.7") for limiter in (first, second, first, second)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].first_refusal and 1 <= verdicts[-1].retry_after <= 60


async def test_a_limiter_whose_store_is_down_allows_and_warns(caplog):
    down = RequestLimiter(storage_for("redis://127.0.0.1:1/0"), "down", limit=1)
    with caplog.at_level("WARNING", logger="helpdesk.ratelimit"):
        assert all([(await down.hit("ip")).allowed for _ in range(3)])
    assert len([r for r in caplog.records if "store unavailable" in r.message]) == 1


def test_lockout_duration_doubles_and_is_capped():
    assert [lockout_duration(300, n) for n in range(4)] == [300, 600, 1200, 2400]
    assert lockout_duration(300, 40) == 24 * 3600


def test_unknown_account_lockouts_follow_the_same_rule():
    tracker = UnknownAccountLockouts(max_failures=2, lockout_seconds=100)
    tracker.fail("k", now=0)
    assert tracker.locked_for("k", now=1) == 0
    tracker.fail("k", now=1)
    assert tracker.locked_for("k", now=1) == 100
    assert tracker.locked_for("k", now=102) == 0
    tracker.fail("k", now=102)
    tracker.fail("k", now=103)
    assert tracker.locked_for("k", now=103) == 200


# --- logout, refresh, idle timeout -------------------------------------------------------


async def test_logout_revokes_the_session_at_once(client, runtime):
    actor = await make_user(runtime)
    tokens = (await login(client, actor.email)).json()
    headers = bearer(tokens["access_token"])
    assert (await client.post(f"{API}/auth/logout", headers=headers)).status_code == 204
    assert (await client.get(f"{API}/users/me", headers=headers)).status_code == 401
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert len(await audit_rows(runtime, "session.logout")) == 1
    # Another session of the same user is untouched.
    assert (await client.get(f"{API}/users/me", headers=actor.headers)).status_code == 200
    assert (await client.post(f"{API}/auth/logout")).status_code == 401


async def test_refresh_rotates_and_a_reused_token_revokes_the_chain(client, runtime):
    actor = await make_user(runtime)
    first = await client.post(f"{API}/auth/refresh", json={"refresh_token": actor.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != actor.refresh_token
    assert (
        await client.get(f"{API}/users/me", headers=bearer(rotated["access_token"]))
    ).status_code == 200

    reuse = await client.post(f"{API}/auth/refresh", json={"refresh_token": actor.refresh_token})
    assert reuse.status_code == 401
    # The whole chain is gone: the newest refresh token and every access token.
    later = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert later.status_code == 401
    assert (
        await client.get(f"{API}/users/me", headers=bearer(rotated["access_token"]))
    ).status_code == 401
    assert len(await audit_rows(runtime, "session.refresh_reuse")) == 1
    junk = await client.post(f"{API}/auth/refresh", json={"refresh_token": "x" * 43})
    assert junk.status_code == 401
    refreshes = await audit_rows(runtime, "auth.refresh")
    assert [r.outcome for r in refreshes] == ["success", "failure", "failure", "failure"]
    assert refreshes[-1].details == {"reason": "invalid refresh token"}


async def test_idle_session_is_refused_and_its_refresh_too(client, runtime):
    actor = await make_user(runtime)
    assert (await client.get(f"{API}/users/me", headers=actor.headers)).status_code == 200
    idle = timedelta(seconds=runtime.settings.session_idle_timeout_seconds + 60)
    async with runtime.database.transaction() as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == actor.session_id)
            .values(last_seen_at=datetime.now(UTC) - idle)
        )
    me = await client.get(f"{API}/users/me", headers=actor.headers)
    assert me.status_code == 401
    assert "idle" in me.json()["error"]["message"]
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": actor.refresh_token}
    )
    assert refreshed.status_code == 401
    [row] = await audit_rows(runtime, "session.idle_timeout")
    assert row.record_id == str(actor.session_id)
    assert row.actor_id == actor.id


# --- password reset ---------------------------------------------------------------------


async def test_forgot_password_answers_the_same_and_links_from_settings(client, runtime):
    actor = await make_user(runtime)
    known = await client.post(
        f"{API}/auth/forgot-password", json={"email": actor.email}, headers={"Host": "evil.example"}
    )
    unknown = await client.post(
        f"{API}/auth/forgot-password", json={"email": unique_email("nobody")}
    )
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    [message] = mail_to(runtime, actor.email)
    assert len(runtime.email.messages()) == 1
    assert "evil.example" not in message["body"]
    assert f"{runtime.settings.public_base_url}/reset-password#token=" in message["body"]
    token = link_token(message)

    async with runtime.database.transaction() as session:
        [row] = list(await session.scalars(select(OneTimeToken)))
    assert row.token_hash == hash_token(token)  # only the hash is stored
    assert row.purpose == "reset_password"
    life = row.expires_at - row.created_at
    assert timedelta(minutes=15) <= life <= timedelta(minutes=30)
    outcomes = sorted(r.outcome for r in await audit_rows(runtime, "auth.reset_requested"))
    assert outcomes == ["failure", "success"]


async def test_reset_password_is_single_use_and_ends_every_session(client, runtime):
    actor = await make_user(runtime)
    other = (await login(client, actor.email)).json()
    await client.post(f"{API}/auth/forgot-password", json={"email": actor.email})
    token = link_token(mail_to(runtime, actor.email)[-1])
    body = {"token": token, "new_password": NEW_PASSWORD}
    reset = await client.post(f"{API}/auth/reset-password", json=body)
    assert reset.status_code == 200
    assert reset.json() == {"status": "password_changed"}
    for headers in (actor.headers, bearer(other["access_token"])):
        assert (await client.get(f"{API}/users/me", headers=headers)).status_code == 401
    second = await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": "yet another pass 3"}
    )
    assert second.status_code == 422
    assert (await login(client, actor.email, PASSWORD)).status_code == 401
    assert (await login(client, actor.email, NEW_PASSWORD)).status_code == 200
    [done] = await audit_rows(runtime, "auth.password_reset")
    assert done.details["sessions_revoked"] == 2


async def test_only_the_newest_reset_link_works_and_expired_links_fail(client, runtime):
    actor = await make_user(runtime)
    for _ in range(2):
        await client.post(f"{API}/auth/forgot-password", json={"email": actor.email})
    old, new = (link_token(m) for m in mail_to(runtime, actor.email))
    stale = await client.post(
        f"{API}/auth/reset-password", json={"token": old, "new_password": NEW_PASSWORD}
    )
    assert stale.status_code == 422
    async with runtime.database.transaction() as session:
        await session.execute(
            update(OneTimeToken)
            .where(OneTimeToken.token_hash == hash_token(new))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = await client.post(
        f"{API}/auth/reset-password", json={"token": new, "new_password": NEW_PASSWORD}
    )
    assert expired.status_code == 422
    assert (await login(client, actor.email, PASSWORD)).status_code == 200


# --- MFA --------------------------------------------------------------------------------


async def test_mfa_enrolment_then_login_with_a_code_never_accepted_twice(client, runtime):
    actor = await make_user(runtime, Role.MANAGER, mfa=False)
    # Without MFA a manager logs in, but administrative routes want an MFA session.
    plain = (await login(client, actor.email)).json()
    agents = await client.get(f"{API}/users/agents", headers=bearer(plain["access_token"]))
    assert agents.status_code == 403
    assert agents.json()["error"]["code"] == "mfa_required"

    setup = await client.post(f"{API}/auth/mfa/setup", headers=bearer(plain["access_token"]))
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/Helpdesk:")
    assert f"secret={secret}" in setup.json()["otpauth_uri"]
    user = await load_user(runtime, actor.id)
    assert user.mfa_secret_enc is not None
    assert secret.encode() not in user.mfa_secret_enc
    assert user.mfa_enabled is False

    headers = bearer(plain["access_token"])
    bad = "000000" if totp_now(secret) != "000000" else "111111"
    wrong = await client.post(f"{API}/auth/mfa/enable", json={"code": bad}, headers=headers)
    assert wrong.status_code == 422
    code = totp_now(secret)
    enabled = await client.post(f"{API}/auth/mfa/enable", json={"code": code}, headers=headers)
    assert enabled.status_code == 200
    assert enabled.json()["mfa_enabled"] is True
    again = await client.post(f"{API}/auth/mfa/setup", headers=headers)
    assert again.status_code == 409

    # The enabling code is spent; so is every code at or before its step.
    replay = await login(client, actor.email, totp=code)
    assert replay.status_code == 401
    assert replay.json()["error"]["details"] == {"mfa_required": True}
    missing = await login(client, actor.email)
    assert missing.status_code == 401
    assert missing.json()["error"]["details"] == {"mfa_required": True}

    step = (await load_user(runtime, actor.id)).mfa_last_step
    assert step is not None
    fresh = totp_at(secret, step + 1)
    mfa_login = await login(client, actor.email, totp=fresh)
    assert mfa_login.status_code == 200
    agents = await client.get(
        f"{API}/users/agents", headers=bearer(mfa_login.json()["access_token"])
    )
    assert agents.status_code == 200
    assert (await login(client, actor.email, totp=fresh)).status_code == 401  # replayed

    actions = {r.action for r in await audit_rows(runtime, "auth.mfa_setup")} | {
        r.outcome for r in await audit_rows(runtime, "auth.mfa_enable")
    }
    assert actions == {"auth.mfa_setup", "failure", "success"}
    async with runtime.database.transaction() as session:
        row = await session.scalar(
            select(AuditLog)
            .where(AuditLog.action == "auth.login", AuditLog.outcome == "success")
            .order_by(AuditLog.seq.desc())
        )
    assert row is not None and row.details["mfa"] is True


async def test_wrong_totp_codes_count_towards_the_lockout(client, runtime):
    actor = await make_user(runtime, Role.ADMINISTRATOR)
    assert actor.totp_secret is not None
    valid = totp_now(actor.totp_secret)
    bad = "123456" if valid != "123456" else "654321"
    for _ in range(runtime.settings.login_max_failures):
        assert (await login(client, actor.email, totp=bad)).status_code == 401
    assert (await login(client, actor.email, totp=valid)).status_code == 429


async def test_one_totp_code_sent_twice_at_once_opens_one_session(client, runtime):
    actor = await make_user(runtime, Role.ADMINISTRATOR)
    assert actor.totp_secret is not None
    code = totp_now(actor.totp_secret)
    first, second = await asyncio.gather(
        login(client, actor.email, totp=code), login(client, actor.email, totp=code)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 401]


async def test_totp_field_must_be_six_digits(client, runtime):
    actor = await make_user(runtime, Role.ADMINISTRATOR)
    response = await login(client, actor.email, totp="12ab56")
    assert response.status_code == 422


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.mark.postgres
async def test_register_login_and_me_on_postgresql(pg_url, var_dir):
    settings = make_settings(var_dir, database_url=pg_url)
    runtime = prepare_runtime(build_runtime(settings))
    try:
        app = create_app(runtime=runtime, run_worker=False)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            email = unique_email("pg")
            assert (await register(http, email, full_name="Pg Person")).status_code == 201
            assert (await register(http, email.upper())).status_code == 409
            assert (await login(http, email, "wrong password 99")).status_code == 401
            tokens = (await login(http, email)).json()
            me = await http.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
            assert (me.status_code, error_of(me)["code"]) == (403, "email_unverified")
            token = link_token(mail_to(runtime, email)[-1])
            verified = await http.post(f"{API}/auth/verify-email", json={"token": token})
            assert verified.status_code == 200
            me = await http.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
            assert me.status_code == 200
            assert (me.json()["email"], me.json()["full_name"]) == (email, "Pg Person")
            logout = await http.post(f"{API}/auth/logout", headers=bearer(tokens["access_token"]))
            assert logout.status_code == 204
            again = await http.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
            assert again.status_code == 401
        async with runtime.database.transaction() as session:
            report = await runtime.audit.verify(session)
        assert report.ok, report
    finally:
        await runtime.close()
