"""Users through the API: own profile, agent list, and account administration (list,
role change, deactivation, a user's audit trail)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from models.audit import AuditLog
from models.enums import Role
from tests.support.auth import API, audit_rows, bearer, load_user, login
from tests.support.factories import make_user

SECRET_KEYS = {"password_hash", "password", "mfa_secret", "mfa_secret_enc", "secret"}


# --- own profile ------------------------------------------------------------------------


async def test_profile_shows_the_decrypted_profile_and_audits_the_read(client, runtime):
    actor = await make_user(runtime, full_name="Robin Reader")
    response = await client.get(f"{API}/users/profile", headers=actor.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["email"], body["first_name"], body["last_name"], body["role"]) == (
        actor.email,
        "Robin",
        "Reader",
        "END_USER",
    )
    assert body["full_name"] == "Robin Reader"  # derived, for older clients
    assert (body["is_active"], body["is_verified"], body["last_login_at"]) == (True, True, None)
    assert not SECRET_KEYS & body.keys()
    assert response.headers["cache-control"] == "no-store"
    [row] = await audit_rows(runtime, "user.profile_read")
    assert (row.actor_id, row.record_id) == (actor.id, str(actor.id))
    assert "Robin" not in json.dumps(row.details)
    assert (await client.get(f"{API}/users/profile")).status_code == 401
    # The product's first path stays as a documented, deprecated alias.
    alias = await client.get(f"{API}/users/me", headers=actor.headers)
    assert alias.json() == body
    operations = client.app.openapi()["paths"]
    assert operations[f"{API}/users/me"]["get"]["deprecated"] is True
    assert operations[f"{API}/users/me"]["put"]["deprecated"] is True
    assert "deprecated" not in operations[f"{API}/users/profile"]["get"]


async def test_last_login_at_is_set_by_a_successful_login_only(client, runtime):
    actor = await make_user(runtime)
    assert (await load_user(runtime, actor.id)).last_login_at is None
    bad = await client.post(
        f"{API}/auth/login", json={"email": actor.email, "password": "wrong password 123"}
    )
    assert bad.status_code == 401
    assert (await load_user(runtime, actor.id)).last_login_at is None
    tokens = (await login(client, actor.email, actor.password)).json()
    stamped = (await load_user(runtime, actor.id)).last_login_at
    assert stamped is not None
    me = await client.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
    assert me.json()["last_login_at"] == stamped.isoformat().replace("+00:00", "Z")


async def test_profile_update_changes_names_and_phone_and_audits_field_names(client, runtime):
    actor = await make_user(runtime, full_name="Old Name")
    update = await client.put(
        f"{API}/users/profile",
        headers=actor.headers,
        json={"first_name": " New ", "last_name": "van Name", "phone": "+1 (555) 010-2030"},
    )
    assert update.status_code == 200
    got = update.json()
    assert (got["first_name"], got["last_name"], got["full_name"], got["phone"]) == (
        "New",
        "van Name",
        "New van Name",
        "+1 (555) 010-2030",
    )
    cleared = await client.put(
        f"{API}/users/profile", headers=actor.headers, json={"phone": None, "last_name": None}
    )
    assert (cleared.json()["phone"], cleared.json()["last_name"]) == (None, None)
    assert cleared.json()["first_name"] == "New"
    unchanged = await client.put(f"{API}/users/profile", headers=actor.headers, json={})
    assert unchanged.status_code == 200
    me = (await client.get(f"{API}/users/profile", headers=actor.headers)).json()
    assert (me["full_name"], me["phone"]) == ("New", None)
    # The older `full_name` field still works (split at its first space), on the alias too.
    legacy = await client.put(
        f"{API}/users/me", headers=actor.headers, json={"full_name": "  Ana de la Cruz "}
    )
    assert (legacy.json()["first_name"], legacy.json()["last_name"]) == ("Ana", "de la Cruz")

    rows = await audit_rows(runtime, "user.profile_update")
    assert [r.details["fields"] for r in rows] == [
        ["first_name", "last_name", "phone"],
        ["last_name", "phone"],
        ["first_name", "last_name"],
    ]
    assert "New" not in json.dumps([r.details for r in rows])


async def test_names_are_sealed_in_their_own_columns(runtime):
    actor = await make_user(runtime, full_name="Sealed Person")
    row = await load_user(runtime, actor.id)
    assert row.first_name_enc is not None and row.last_name_enc is not None
    assert b"Sealed" not in row.first_name_enc and b"Person" not in row.last_name_enc


@pytest.mark.parametrize(
    "body",
    [
        {"role": "ADMINISTRATOR"},
        {"email": "other@example.test"},
        {"is_active": False},
        {"phone": "not a phone"},
        {"full_name": ""},
        {"full_name": "x" * 201},
        {"first_name": ""},
        {"first_name": None},
        {"last_name": "x" * 101},
        {"full_name": "Pat Example", "first_name": "Pat"},
    ],
)
async def test_profile_update_refuses_forbidden_or_bad_fields(client, runtime, body):
    actor = await make_user(runtime)
    response = await client.put(f"{API}/users/profile", headers=actor.headers, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"
    assert (await load_user(runtime, actor.id)).role == "END_USER"


# --- agents list ------------------------------------------------------------------------


async def test_agents_list_shows_active_agents_to_managers_and_admins_only(client, runtime):
    manager = await make_user(runtime, Role.MANAGER)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    agent = await make_user(runtime, Role.SUPPORT_AGENT, full_name="Agent Active")
    gone = await make_user(runtime, Role.SUPPORT_AGENT, full_name="Agent Gone")
    end_user = await make_user(runtime)
    assert (
        await client.post(f"{API}/users/{gone.id}/deactivate", headers=admin.headers)
    ).status_code == 200

    for caller in (manager, admin):
        response = await client.get(f"{API}/users/agents", headers=caller.headers)
        assert response.status_code == 200
        assert response.json() == [
            {
                "id": str(agent.id),
                "email": agent.email,
                "first_name": "Agent",
                "last_name": "Active",
                "full_name": "Agent Active",
                "role": "SUPPORT_AGENT",
                "is_active": True,
                "is_verified": True,
            }
        ]
    for caller in (agent, end_user):
        denied = await client.get(f"{API}/users/agents", headers=caller.headers)
        assert denied.status_code == 403
    denied_rows = await audit_rows(runtime, "access.denied")
    assert {r.actor_id for r in denied_rows} == {agent.id, end_user.id}
    assert len(await audit_rows(runtime, "user.list_read")) == 2


# --- admin list -------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{"max_page_size": 2}], indirect=True)
async def test_admin_lists_users_a_capped_page_at_a_time(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    made = [await make_user(runtime) for _ in range(3)]
    first = await client.get(f"{API}/users", headers=admin.headers, params={"page_size": 500})
    assert first.status_code == 200
    body = first.json()
    assert (body["page_size"], body["total"], len(body["items"])) == (2, 4, 2)
    assert not SECRET_KEYS & body["items"][0].keys()
    second = (
        await client.get(f"{API}/users", headers=admin.headers, params={"page": 2, "page_size": 2})
    ).json()
    ids = [i["id"] for i in body["items"] + second["items"]]
    assert ids == [str(u.id) for u in (admin, *made)]
    assert {i["email"] for i in second["items"]} == {made[1].email, made[2].email}
    only_admins = (
        await client.get(f"{API}/users", headers=admin.headers, params={"role": "ADMINISTRATOR"})
    ).json()
    assert [i["id"] for i in only_admins["items"]] == [str(admin.id)]
    for bad in ({"page": 0}, {"page_size": 0}, {"role": "GOD"}):
        assert (
            await client.get(f"{API}/users", headers=admin.headers, params=bad)
        ).status_code == 422


# --- role change ------------------------------------------------------------------------


async def test_admin_changes_a_role_with_before_and_after_audited(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    target = await make_user(runtime)
    response = await client.put(
        f"{API}/users/{target.id}/role", headers=admin.headers, json={"role": "SUPPORT_AGENT"}
    )
    assert response.status_code == 200
    assert response.json()["role"] == "SUPPORT_AGENT"
    assert "email" not in response.json()
    [row] = await audit_rows(runtime, "user.role_change")
    assert (row.details["before"], row.details["after"]) == ("END_USER", "SUPPORT_AGENT")
    assert (row.actor_id, row.record_id) == (admin.id, str(target.id))
    # The old session ends: the new role takes effect at the next sign-in.
    assert (await client.get(f"{API}/users/me", headers=target.headers)).status_code == 401
    relogged = (await login(client, target.email)).json()
    me = await client.get(f"{API}/users/me", headers=bearer(relogged["access_token"]))
    assert me.json()["role"] == "SUPPORT_AGENT"


async def test_role_change_refusals(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    manager = await make_user(runtime, Role.MANAGER)
    target = await make_user(runtime)
    url = f"{API}/users/{target.id}/role"
    self_demote = await client.put(
        f"{API}/users/{admin.id}/role", headers=admin.headers, json={"role": "END_USER"}
    )
    assert self_demote.status_code == 409
    unknown = await client.put(
        f"{API}/users/{uuid.uuid4()}/role", headers=admin.headers, json={"role": "MANAGER"}
    )
    assert unknown.status_code == 404
    assert (await client.put(url, headers=admin.headers, json={"role": "ROOT"})).status_code == 422
    assert (
        await client.put(url, headers=admin.headers, json={"role": "MANAGER", "x": 1})
    ).status_code == 422
    assert (
        await client.put(url, headers=manager.headers, json={"role": "MANAGER"})
    ).status_code == 403
    assert (
        await client.put(url, headers=target.headers, json={"role": "ADMINISTRATOR"})
    ).status_code == 403
    assert (await load_user(runtime, target.id)).role == "END_USER"
    assert (await load_user(runtime, admin.id)).role == "ADMINISTRATOR"


# --- deactivation -----------------------------------------------------------------------


async def test_deactivation_revokes_every_session_at_once(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    target = await make_user(runtime, Role.SUPPORT_AGENT)
    second = (await login(client, target.email)).json()
    assert (await client.get(f"{API}/users/me", headers=target.headers)).status_code == 200

    response = await client.post(f"{API}/users/{target.id}/deactivate", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert response.json()["sessions_revoked"] == 2

    assert (await client.get(f"{API}/users/me", headers=target.headers)).status_code == 401
    assert (
        await client.get(f"{API}/users/me", headers=bearer(second["access_token"]))
    ).status_code == 401
    refresh = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert refresh.status_code == 401
    assert (await login(client, target.email)).status_code == 401
    [row] = await audit_rows(runtime, "user.deactivate")
    assert (row.actor_id, row.record_id) == (admin.id, str(target.id))
    assert len(await audit_rows(runtime, "session.deactivated")) == 2

    repeat = await client.post(f"{API}/users/{target.id}/deactivate", headers=admin.headers)
    assert repeat.status_code == 200
    assert repeat.json()["sessions_revoked"] == 0


async def test_deactivation_refusals(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    manager = await make_user(runtime, Role.MANAGER)
    assert (
        await client.post(f"{API}/users/{admin.id}/deactivate", headers=admin.headers)
    ).status_code == 409
    assert (
        await client.post(f"{API}/users/{uuid.uuid4()}/deactivate", headers=admin.headers)
    ).status_code == 404
    assert (
        await client.post(f"{API}/users/not-a-uuid/deactivate", headers=admin.headers)
    ).status_code == 422
    assert (
        await client.post(f"{API}/users/{admin.id}/deactivate", headers=manager.headers)
    ).status_code == 403
    assert (await load_user(runtime, admin.id)).is_active is True
    assert (await client.get(f"{API}/users/me", headers=admin.headers)).status_code == 200


# --- a user's audit trail ---------------------------------------------------------------


async def test_admin_reads_a_users_audit_trail_without_phi(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    target = await make_user(runtime, full_name="Quinn Private")
    await client.put(
        f"{API}/users/me",
        headers=target.headers,
        json={"full_name": "Quinn Secret", "phone": "+44 20 7946 0958"},
    )
    await client.get(f"{API}/users/me", headers=target.headers)
    await login(client, target.email, "wrong password 11")
    await client.put(
        f"{API}/users/{target.id}/role", headers=admin.headers, json={"role": "SUPPORT_AGENT"}
    )

    response = await client.get(
        f"{API}/users/{target.id}/audit-log", headers=admin.headers, params={"page_size": 3}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 5
    assert [r["action"] for r in body["items"]] == [
        "user.role_change",
        "session.role_change",
        "auth.login",
    ]
    assert body["items"][2]["outcome"] == "failure"
    assert body["items"][2]["ip"] == "127.0.0.1"
    rest = (
        await client.get(
            f"{API}/users/{target.id}/audit-log",
            headers=admin.headers,
            params={"page": 2, "page_size": 3},
        )
    ).json()
    # The first read is itself audited (about this user), so the newest row is now it.
    assert rest["total"] == 6
    assert [r["action"] for r in rest["items"]] == [
        "auth.login",
        "user.profile_read",
        "user.profile_update",
    ]
    text = response.text + json.dumps(rest)
    for phi in ("Quinn", "7946", target.email, target.email.split("@")[0]):
        assert phi not in text

    assert (
        await client.get(f"{API}/users/{uuid.uuid4()}/audit-log", headers=admin.headers)
    ).status_code == 404
    assert (
        await client.get(f"{API}/users/{target.id}/audit-log", headers=target.headers)
    ).status_code == 401  # demoted: re-login
    async with runtime.database.transaction() as session:
        read = await session.scalar(select(AuditLog).where(AuditLog.action == "audit.read"))
    assert read is not None and read.record_id == str(target.id)


# --- registration with the seed's names -------------------------------------------------


async def test_registration_takes_first_and_last_name(client, runtime):
    email = f"names-{uuid.uuid4().hex[:8]}@example.test"
    body = {"email": email, "password": "correct horse battery 42"}
    created = await client.post(
        f"{API}/auth/register", json={**body, "first_name": "Grace", "last_name": "Hopper"}
    )
    assert created.status_code == 201
    assert created.json()["is_verified"] is False
    async with runtime.database.transaction() as session:
        from helpdesk.services import users

        user = await users.get_user(session, uuid.UUID(created.json()["id"]))
        view = await users.view(session, runtime, user)
    assert (view.first_name, view.last_name, view.full_name) == ("Grace", "Hopper", "Grace Hopper")
    nameless = await client.post(
        f"{API}/auth/register", json={**body, "email": f"x{uuid.uuid4().hex[:6]}@example.test"}
    )
    assert nameless.status_code == 422
    assert nameless.json()["error"]["code"] == "validation_failed"


async def test_openapi_carries_the_user_seed_columns(client):
    schemas = (await client.get(f"{API}/openapi.json")).json()["components"]["schemas"]
    seed = {"first_name", "last_name", "is_active", "is_verified", "role", "email"}
    for name in ("ProfileOut", "UserAdminOut", "AgentOut"):
        assert seed <= set(schemas[name]["properties"]), name
    for name in ("ProfileOut", "UserAdminOut"):
        assert "last_login_at" in schemas[name]["properties"], name
    assert {"first_name", "last_name"} <= set(schemas["ProfileUpdateIn"]["properties"])
    assert {"first_name", "last_name"} <= set(schemas["RegisterIn"]["properties"])
    assert schemas["ProfileUpdateIn"]["properties"]["full_name"]["deprecated"] is True
