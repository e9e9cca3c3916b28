"""Email verification gates the account: an unverified account may log in, but only to
verify or ask for a new link (and to log out); every other route answers 403
`email_unverified`, audited. `POST /auth/resend-verification` answers the same for every
address and is rate-limited like the other anonymous auth routes."""

from __future__ import annotations

import pytest

from models.enums import Role
from tests.support.auth import (
    API,
    audit_rows,
    bearer,
    error_of,
    link_token,
    login,
    mail_to,
    register,
    unique_email,
)
from tests.support.factories import make_user


async def test_an_unverified_account_is_refused_everywhere_but_verification(client, runtime):
    email = unique_email("unverified")
    assert (await register(client, email)).status_code == 201
    tokens = (await login(client, email)).json()  # logging in works ...
    headers = bearer(tokens["access_token"])
    for method, path, body in (
        ("GET", "/users/profile", None),
        ("PUT", "/users/profile", {"first_name": "X"}),
        ("GET", "/tickets", None),
        ("POST", "/tickets", {"title": "t", "description": "d"}),
        ("GET", "/categories", None),
        ("POST", "/auth/mfa/setup", None),
    ):
        response = await client.request(method, f"{API}{path}", headers=headers, json=body)
        assert response.status_code == 403, (method, path, response.text)
        error = error_of(response)
        assert error["code"] == "email_unverified", (method, path)
        assert error["details"] == {"resend": "/api/v1/auth/resend-verification"}
    denied = await audit_rows(runtime, "access.denied")
    assert len(denied) == 6 and {r.details["why"] for r in denied} == {"email_unverified"}

    # ... the link makes the same session useful.
    verified = await client.post(
        f"{API}/auth/verify-email", json={"token": link_token(mail_to(runtime, email)[-1])}
    )
    assert verified.status_code == 200
    profile = await client.get(f"{API}/users/profile", headers=headers)
    assert profile.status_code == 200 and profile.json()["is_verified"] is True


async def test_an_unverified_account_may_log_out(client, runtime):
    actor = await make_user(runtime, verified=False)
    assert (await client.get(f"{API}/users/profile", headers=actor.headers)).status_code == 403
    assert (await client.post(f"{API}/auth/logout", headers=actor.headers)).status_code == 204
    assert (await client.get(f"{API}/users/profile", headers=actor.headers)).status_code == 401


async def test_staff_accounts_are_gated_too(client, runtime):
    agent = await make_user(runtime, Role.SUPPORT_AGENT, verified=False)
    response = await client.get(f"{API}/tickets", headers=agent.headers)
    assert (response.status_code, error_of(response)["code"]) == (403, "email_unverified")


async def test_resend_verification_answers_the_same_for_every_address(client, runtime):
    pending = unique_email("pending")
    assert (await register(client, pending)).status_code == 201
    first_link = link_token(mail_to(runtime, pending)[-1])
    done = await make_user(runtime)  # verified
    answers = []
    for address in (pending, unique_email("nobody"), done.email):
        response = await client.post(f"{API}/auth/resend-verification", json={"email": address})
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 202
    assert len(mail_to(runtime, pending)) == 2  # a new link for the pending account only
    assert mail_to(runtime, done.email) == []
    outcomes = [
        (r.outcome, r.details) for r in await audit_rows(runtime, "auth.verification_resent")
    ]
    assert outcomes == [
        ("success", {}),
        ("failure", {"reason": "unknown_account"}),
        ("failure", {"reason": "already_verified"}),
    ]
    # Only the newest link works.
    old = await client.post(f"{API}/auth/verify-email", json={"token": first_link})
    assert (old.status_code, error_of(old)["code"]) == (422, "validation_failed")
    new_link = link_token(mail_to(runtime, pending)[-1])
    assert (
        await client.post(f"{API}/auth/verify-email", json={"token": new_link})
    ).status_code == 200
    tokens = (await login(client, pending)).json()
    profile = await client.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
    assert profile.status_code == 200


@pytest.mark.parametrize("settings", [{"rate_limit_per_minute": 3}], indirect=True)
async def test_resend_verification_is_rate_limited(client):
    statuses = [
        (
            await client.post(
                f"{API}/auth/resend-verification", json={"email": unique_email("flood")}
            )
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    # Malformed bodies count as well (the limit runs before validation).
    refused = await client.post(f"{API}/auth/resend-verification", json={})
    assert refused.status_code == 429 and "retry-after" in refused.headers


async def test_resend_verification_refuses_bad_bodies(client):
    for body in ({}, {"email": ""}, {"email": "a@b.test", "extra": 1}, {"email": "x" * 300}):
        response = await client.post(f"{API}/auth/resend-verification", json=body)
        assert (response.status_code, error_of(response)["code"]) == (422, "validation_failed")


async def test_socket_authentication_refuses_an_unverified_account(runtime):
    from api.deps import authenticate_token
    from helpdesk.errors import EmailUnverified

    actor = await make_user(runtime, verified=False)
    with pytest.raises(EmailUnverified):
        await authenticate_token(runtime, actor.token)  # what Socket.IO's connect calls
    verified = await make_user(runtime)
    assert (await authenticate_token(runtime, verified.token)).id == verified.id
