"""Categories: the tree, sibling-unique names, no cycles, deactivate-in-use, role checks."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from helpdesk.runtime import Runtime
from models.audit import AuditLog
from models.category import Category
from models.enums import Role
from tests.support.factories import Actor, make_user
from tests.support.ticket_rows import make_ticket

URL = "/api/v1/categories"


async def _create(
    client: httpx.AsyncClient, admin: Actor, name: str, parent: str | None = None
) -> dict:
    body: dict[str, object] = {"name": name}
    if parent is not None:
        body["parent_id"] = parent
    response = await client.post(URL, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_admin_builds_a_tree_everyone_reads_it(client: httpx.AsyncClient, runtime: Runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    user = await make_user(runtime, Role.END_USER)
    hardware = await _create(client, admin, "Hardware")
    printers = await _create(client, admin, "Printers", hardware["id"])
    await _create(client, admin, "Laptops", hardware["id"])
    await _create(client, admin, "Software")

    flat = (await client.get(URL, headers=user.headers)).json()
    assert flat["shape"] == "flat"
    by_name = {c["name"]: c for c in flat["items"]}
    assert set(by_name) == {"Hardware", "Printers", "Laptops", "Software"}
    assert by_name["Printers"]["parent_id"] == hardware["id"]
    assert by_name["Hardware"]["parent_id"] is None

    tree = (await client.get(URL, params={"shape": "tree"}, headers=user.headers)).json()
    roots = {node["name"]: node for node in tree["items"]}
    assert set(roots) == {"Hardware", "Software"}
    assert [c["name"] for c in roots["Hardware"]["children"]] == ["Laptops", "Printers"]
    assert roots["Hardware"]["children"][1]["id"] == printers["id"]
    assert roots["Software"]["children"] == []


async def test_names_are_unique_among_siblings_only(client: httpx.AsyncClient, runtime: Runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    a = await _create(client, admin, "Network")
    b = await _create(client, admin, "Phones")
    await _create(client, admin, "Other", a["id"])
    # The same name under another parent is fine; the same name (any case) beside it is not.
    await _create(client, admin, "Other", b["id"])
    dup = await client.post(
        URL, json={"name": "other ", "parent_id": a["id"]}, headers=admin.headers
    )
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "conflict"
    root_dup = await client.post(URL, json={"name": "NETWORK"}, headers=admin.headers)
    assert root_dup.status_code == 409
    rename = await client.put(f"{URL}/{b['id']}", json={"name": "network"}, headers=admin.headers)
    assert rename.status_code == 409


async def test_moves_refuse_cycles_and_unknown_parents(client: httpx.AsyncClient, runtime: Runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    top = await _create(client, admin, "Top")
    mid = await _create(client, admin, "Mid", top["id"])
    leaf = await _create(client, admin, "Leaf", mid["id"])

    for target in (leaf["id"], mid["id"], top["id"]):
        response = await client.put(
            f"{URL}/{top['id']}", json={"parent_id": target}, headers=admin.headers
        )
        assert response.status_code == 409, target
    unknown = await client.put(
        f"{URL}/{leaf['id']}", json={"parent_id": str(uuid.uuid4())}, headers=admin.headers
    )
    assert unknown.status_code == 422
    assert (
        await client.post(
            URL, json={"name": "X", "parent_id": str(uuid.uuid4())}, headers=admin.headers
        )
    ).status_code == 422
    missing = await client.put(f"{URL}/{uuid.uuid4()}", json={"name": "Y"}, headers=admin.headers)
    assert missing.status_code == 404

    # A legal move, then to the root with an explicit null.
    moved = await client.put(
        f"{URL}/{leaf['id']}", json={"parent_id": top["id"]}, headers=admin.headers
    )
    assert moved.status_code == 200 and moved.json()["parent_id"] == top["id"]
    root = await client.put(f"{URL}/{leaf['id']}", json={"parent_id": None}, headers=admin.headers)
    assert root.status_code == 200 and root.json()["parent_id"] is None
    assert (
        await client.put(f"{URL}/{leaf['id']}", json={"name": None}, headers=admin.headers)
    ).status_code == 422
    assert (
        await client.put(f"{URL}/{leaf['id']}", json={"colour": "red"}, headers=admin.headers)
    ).status_code == 422


async def test_delete_removes_unused_leaf_and_deactivates_used(
    client: httpx.AsyncClient, runtime: Runtime
):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    user = await make_user(runtime, Role.END_USER)
    unused = await _create(client, admin, "Unused")
    used = await _create(client, admin, "Billing")
    parent = await _create(client, admin, "Parent")
    child = await _create(client, admin, "Child", parent["id"])
    await make_ticket(runtime, requester_id=user.id, category_id=uuid.UUID(used["id"]))

    gone = await client.delete(f"{URL}/{unused['id']}", headers=admin.headers)
    assert gone.status_code == 200 and gone.json()["outcome"] == "deleted"
    kept = await client.delete(f"{URL}/{used['id']}", headers=admin.headers)
    assert kept.status_code == 200
    assert kept.json()["outcome"] == "deactivated"
    assert kept.json()["category"]["is_active"] is False
    with_child = await client.delete(f"{URL}/{parent['id']}", headers=admin.headers)
    assert with_child.json()["outcome"] == "deactivated"

    async with runtime.database.transaction() as session:
        rows = {c.name: c for c in await session.scalars(select(Category))}
        actions = list(
            await session.scalars(
                select(AuditLog.action).where(AuditLog.table_name == "categories")
            )
        )
    assert "Unused" not in rows
    assert rows["Billing"].is_active is False
    # The subtree goes inactive with its parent: no active child under an inactive parent.
    assert rows["Child"].is_active is False and rows["Parent"].is_active is False
    assert actions.count("category.create") == 4
    assert "category.delete" in actions and actions.count("category.deactivate") == 2

    active = (await client.get(URL, headers=agent.headers)).json()["items"]
    assert active == []
    everything = await client.get(URL, params={"include_inactive": "true"}, headers=admin.headers)
    assert {c["name"] for c in everything.json()["items"]} == {"Billing", "Parent", "Child"}
    refused = await client.get(URL, params={"include_inactive": "true"}, headers=agent.headers)
    assert refused.status_code == 403

    # A child cannot come back before its parent; nothing new goes under an inactive parent.
    assert (
        await client.put(f"{URL}/{child['id']}", json={"is_active": True}, headers=admin.headers)
    ).status_code == 409
    assert (
        await client.post(
            URL, json={"name": "New", "parent_id": parent["id"]}, headers=admin.headers
        )
    ).status_code == 409
    back = await client.put(
        f"{URL}/{parent['id']}", json={"is_active": True}, headers=admin.headers
    )
    assert back.status_code == 200 and back.json()["is_active"] is True
    assert (await client.delete(f"{URL}/{uuid.uuid4()}", headers=admin.headers)).status_code == 404


async def test_only_mfa_administrators_change_categories(
    client: httpx.AsyncClient, runtime: Runtime
):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    target = await _create(client, admin, "Target")
    callers = {
        "anonymous": None,
        "END_USER": await make_user(runtime, Role.END_USER),
        "SUPPORT_AGENT": await make_user(runtime, Role.SUPPORT_AGENT),
        "MANAGER": await make_user(runtime, Role.MANAGER),
        "admin without MFA": await make_user(runtime, Role.ADMINISTRATOR, mfa=False),
    }
    for label, actor in callers.items():
        headers = actor.headers if actor else {}
        expected = 401 if actor is None else 403
        calls = [
            client.post(URL, json={"name": f"by {label}"}, headers=headers),
            client.put(f"{URL}/{target['id']}", json={"name": f"by {label}"}, headers=headers),
            client.delete(f"{URL}/{target['id']}", headers=headers),
        ]
        for call in calls:
            response = await call
            assert response.status_code == expected, (label, response.text)
        listed = await client.get(URL, headers=headers)
        assert listed.status_code == (401 if actor is None else 200)
    assert (
        await client.get(URL, params={"colour": "red"}, headers=admin.headers)
    ).status_code == 422
    async with runtime.database.transaction() as session:
        denied = await session.scalar(
            select(AuditLog).where(AuditLog.action == "access.denied").limit(1)
        )
    assert denied is not None and denied.outcome == "denied"
