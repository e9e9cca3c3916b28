"""Least privilege, route by route: every route of the app times {anonymous, END_USER,
SUPPORT_AGENT, MANAGER, ADMINISTRATOR}, checked against the table merged from
tests/support/route_roles/*.py. A route without an entry fails, naming the route.

Semantics (see tests/support/route_roles/__init__.py): "deny" is 401 for anonymous and 403 (or a
hiding 404) for a signed-in role; "allow" is any answer but 401/403 (a 404 for the random
ids used, a 422 for the near-empty body are the route's own answers, past the gate). A 5xx
fails, except 503 when the app has no Temporal client (the gate was passed; Temporal is
what is missing)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

import tests.support.route_roles as route_roles
from api.app import PUBLIC_ROUTES
from helpdesk.runtime import Runtime
from helpdesk.services import sessions
from models.enums import Role
from models.user import User
from tests.support.auth import audit_rows
from tests.support.factories import Actor, make_user

ROLES = ("anonymous", *(role.value for role in Role))
IGNORED_METHODS = {"HEAD", "OPTIONS"}
_PATH_PARAM = re.compile(r"\{([^}:]+)(:[^}]+)?\}")

Key = tuple[str, str]


def every_route(app: FastAPI) -> Iterator[tuple[Key, Route]]:
    """(METHOD, path) of every HTTP route, included routers flattened (FastAPI ≥ 0.165
    keeps them as lazy `_IncludedRouter` entries of `app.routes`)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    for context in contexts:
        original = getattr(context, "original_route", context)
        if not isinstance(original, Route):
            continue  # mounts (Socket.IO, static files) have no methods to check
        for method in sorted((context.methods or set()) - IGNORED_METHODS):
            yield (method, context.path), original


def expected_table() -> tuple[dict[Key, dict[str, str]], list[str]]:
    """Every module's EXPECTED merged, and the keys declared twice."""
    merged: dict[Key, dict[str, str]] = {}
    owner: dict[Key, str] = {}
    duplicates = []
    for info in pkgutil.iter_modules(route_roles.__path__):
        module = importlib.import_module(f"{route_roles.__name__}.{info.name}")
        for key, roles in getattr(module, "EXPECTED", {}).items():
            if key in merged:
                duplicates.append(f"{key[0]} {key[1]} in {owner[key]} and {info.name}")
            merged[key] = roles
            owner[key] = info.name
    return merged, duplicates


def framework_docs(app: FastAPI) -> set[Key]:
    urls = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return {("GET", url) for url in urls if url}


def concrete(path: str) -> str:
    return _PATH_PARAM.sub(lambda _: str(uuid.uuid4()), path)


# --- the table is complete and well-formed ----------------------------------------------


async def test_every_route_has_an_entry(client):
    table, duplicates = expected_table()
    routes = dict(every_route(client.app))
    missing = sorted(f"{m} {p}" for m, p in routes if (m, p) not in table)
    assert not missing, (
        "routes without an entry in tests/support/route_roles/*.py (add who may call them): "
        + ", ".join(missing)
    )
    assert not duplicates, "entries declared twice: " + ", ".join(duplicates)
    malformed = sorted(
        f"{m} {p}"
        for (m, p), roles in table.items()
        if set(roles) != set(ROLES) or not set(roles.values()) <= {"allow", "deny"}
    )
    assert not malformed, (
        "entries must give allow/deny for each of " + str(ROLES) + ": " + (", ".join(malformed))
    )


async def test_no_entry_names_a_route_that_does_not_exist(client):
    table, _ = expected_table()
    routes = dict(every_route(client.app))
    stale = sorted(f"{m} {p}" for m, p in table if (m, p) not in routes)
    assert not stale, "entries for routes the app does not have: " + ", ".join(stale)


async def test_only_the_public_list_is_open_to_anonymous_callers(client):
    table, _ = expected_table()
    public = set(PUBLIC_ROUTES) | framework_docs(client.app)
    open_to_anonymous = {key for key, roles in table.items() if roles["anonymous"] == "allow"}
    assert open_to_anonymous <= public, sorted(open_to_anonymous - public)
    # ... and every public route is really reachable (the table agrees with the list).
    routes = dict(every_route(client.app))
    assert {key for key in PUBLIC_ROUTES if key in routes} <= open_to_anonymous


# --- every route, every role -----------------------------------------------------------


async def _fresh_sessions(
    runtime: Runtime, actors: dict[Role, Actor], count: int
) -> dict[Role, list[dict[str, str]]]:
    """`count` new sessions per role (one transaction), so that each probe gets its own
    and a logout or revocation probe cannot spoil the next one."""
    headers: dict[Role, list[dict[str, str]]] = {role: [] for role in actors}
    async with runtime.database.transaction() as session:
        for role, actor in actors.items():
            user = await session.get(User, actor.id)
            assert user is not None
            for _ in range(count):
                issued = await sessions.start(
                    session,
                    runtime,
                    user,
                    mfa=role in (Role.MANAGER, Role.ADMINISTRATOR),
                    ip="127.0.0.1",
                    user_agent="route-roles",
                )
                headers[role].append({"Authorization": f"Bearer {issued.access_token}"})
    return headers


async def _send(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
    return await http.request(method, concrete(path), headers=headers, json=body)


def _verdict(status: int, who: str, expected: str, temporal_absent: bool) -> str | None:
    """None when the status matches the expectation, else what went wrong."""
    if status == 503 and temporal_absent:
        return None if expected == "allow" else "503 (expected a denial before Temporal)"
    if status >= 500:
        return f"{status} (a server error)"
    if expected == "allow":
        return f"{status} (expected the gate to let it through)" if status in (401, 403) else None
    wanted = {401} if who == "anonymous" else {403, 404}
    return None if status in wanted else f"{status} (expected {sorted(wanted)})"


async def test_every_route_answers_every_role_as_declared(client, runtime):
    table, _ = expected_table()
    actors = {role: await make_user(runtime, role) for role in Role}
    routes = sorted(every_route(client.app), key=lambda item: item[0])
    fresh = await _fresh_sessions(runtime, actors, len(routes))
    temporal_absent = runtime.temporal is None
    problems = []
    for (method, path), _route in routes:
        expected = table.get((method, path))
        if expected is None:
            continue  # reported by test_every_route_has_an_entry
        for who in ROLES:
            headers = {} if who == "anonymous" else fresh[Role(who)].pop()
            response = await _send(client, method, path, headers)
            problem = _verdict(response.status_code, who, expected[who], temporal_absent)
            if problem:
                problems.append(f"{method} {path} as {who}: {problem}")
    assert not problems, "\n".join(problems)


# --- administrative routes need an MFA session and an allowed address -------------------


def _admin_only_routes(client: httpx.AsyncClient) -> list[Key]:
    table, _ = expected_table()
    return sorted(
        key
        for key, _route in every_route(client.app)  # type: ignore[attr-defined]
        if isinstance(_route, APIRoute)
        and key in table
        and table[key]["ADMINISTRATOR"] == "allow"
        and table[key]["MANAGER"] == "deny"
    )


async def test_an_admin_without_an_mfa_session_is_refused_on_admin_routes(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR, mfa=False)
    routes = _admin_only_routes(client)
    assert ("GET", "/api/v1/users") in routes
    wrong = []
    for method, path in routes:
        response = await _send(client, method, path, admin.headers)
        code = response.json().get("error", {}).get("code") if response.content else None
        if (response.status_code, code) != (403, "mfa_required"):
            wrong.append(f"{method} {path}: {response.status_code} {code}")
    assert not wrong, "\n".join(wrong)
    denied = await audit_rows(runtime, "access.denied")
    assert {r.details.get("why") for r in denied} == {"mfa"}
    assert {r.actor_id for r in denied} == {admin.id}


async def test_an_admin_outside_the_ip_allowlist_is_refused(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    assert not any(net.startswith("203.0.113.") for net in runtime.settings.admin_ip_allowlist)
    outside = httpx.ASGITransport(app=client.app, client=("203.0.113.9", 1234))
    async with httpx.AsyncClient(transport=outside, base_url="http://testserver") as far:
        wrong = []
        for method, path in _admin_only_routes(client):
            response = await _send(far, method, path, admin.headers)
            if response.status_code != 403:
                wrong.append(f"{method} {path}: {response.status_code}")
        assert not wrong, "\n".join(wrong)
        # Not an administrative route: the same admin, from the same address, is served.
        assert (await far.get("/api/v1/users/me", headers=admin.headers)).status_code == 200
    inside = await client.get("/api/v1/users", headers=admin.headers)
    assert inside.status_code == 200
    denied = await audit_rows(runtime, "access.denied")
    assert denied and {r.details.get("why") for r in denied} == {"ip_allowlist"}
    assert {r.ip for r in denied} == {"203.0.113.9"}


@pytest.mark.parametrize("role", [Role.END_USER, Role.SUPPORT_AGENT])
async def test_denials_are_audited(client, runtime, role):
    actor = await make_user(runtime, role)
    response = await client.get("/api/v1/users", headers=actor.headers)
    assert response.status_code == 403
    [row] = await audit_rows(runtime, "access.denied")
    assert (row.actor_id, row.outcome, row.details["why"]) == (actor.id, "denied", "role")
