"""Incident response: revoking every session stops every token at once; an account's audit
trail exports whole, oldest first, and both acts are audited."""

from __future__ import annotations

import io
import json

import httpx

from helpdesk import incident
from helpdesk.runtime import Runtime
from models.enums import Role
from tests.support.factories import make_user


async def test_revoke_all_sessions_logs_everyone_out(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    people = [await make_user(runtime, role) for role in (Role.END_USER, Role.SUPPORT_AGENT)]
    for person in people:
        assert (await client.get("/api/v1/users/me", headers=person.headers)).status_code == 200
    assert await incident.revoke_all_sessions(runtime) == 2
    for person in people:
        assert (await client.get("/api/v1/users/me", headers=person.headers)).status_code == 401
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": person.refresh_token}
        )
        assert refreshed.status_code == 401


async def test_revoke_one_account_only(client: httpx.AsyncClient, runtime: Runtime) -> None:
    target, bystander = (await make_user(runtime), await make_user(runtime))
    assert await incident.revoke_all_sessions(runtime, target.id) == 1
    assert (await client.get("/api/v1/users/me", headers=target.headers)).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=bystander.headers)).status_code == 200


async def test_audit_trail_export_is_whole_and_ordered(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    person = await make_user(runtime)
    for _ in range(3):
        await client.get("/api/v1/users/me", headers=person.headers)
    out = io.StringIO()
    count = await incident.export_audit_trail(runtime, person.id, out.write)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(rows) >= 2
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert all(r["actor_id"] == str(person.id) or r["record_id"] == str(person.id) for r in rows)
    # The export itself is on the record.
    again = io.StringIO()
    await incident.export_audit_trail(runtime, person.id, again.write)
    assert json.loads(again.getvalue().splitlines()[-1])["action"] == "incident.audit_exported"
