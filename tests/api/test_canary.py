"""Encryption at rest, proven on the bytes: contact data written through the API never
appears in the SQLite file or its WAL; swapped or flipped ciphertexts fail cleanly."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import update

from models.enums import Role
from models.user import User
from tests.support.auth import API, audit_rows, bearer, link_token, load_user, login, register
from tests.support.canary import assert_absent, database_files
from tests.support.factories import PASSWORD, make_user


async def test_contact_data_is_absent_from_the_database_file_and_its_wal(client, runtime):
    canary = f"Canary{secrets.token_hex(6)}"
    # A phone must look like one: digits, made unique by the random groups and separators.
    groups = [
        secrets.randbelow(900) + 100,
        secrets.randbelow(900) + 100,
        secrets.randbelow(9000) + 1000,
    ]
    phone = "+44 7{}-{}-{}".format(*groups)
    email = f"{canary.lower()}@canary.example.test"
    password = f"pw {canary} long enough"

    response = await register(
        client, email, password=password, full_name=f"Zed {canary} Q", phone=phone
    )
    assert response.status_code == 201
    files = database_files(runtime)
    # Positive control: what was just written in clear (the audit row naming the new
    # user) is found in these bytes, so an absence below means something.
    user_id = uuid.UUID(response.json()["id"])
    everything = b"".join(files.values())
    assert b"auth.register" in everything
    assert user_id.hex.encode() in everything or str(user_id).encode() in everything
    assert_absent(files, canary, phone, email, password)

    tokens = (await login(client, email, password)).json()
    [message] = runtime.email.messages()
    verified = await client.post(f"{API}/auth/verify-email", json={"token": link_token(message)})
    assert verified.status_code == 200
    me = await client.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert (me.json()["email"], me.json()["full_name"], me.json()["phone"]) == (
        email,
        f"Zed {canary} Q",
        phone,
    )
    changed = await client.put(
        f"{API}/users/profile",
        headers=bearer(tokens["access_token"]),
        json={"full_name": f"Changed {canary}"},
    )
    assert changed.json()["full_name"] == f"Changed {canary}"
    # Reads, the update and their audit rows added nothing readable either.
    assert_absent(database_files(runtime), canary, phone, email, password)
    # The verification mail carries a link, not the person's data.
    [message] = runtime.email.messages()
    assert canary not in message["body"] + message["subject"]


async def test_swapped_email_ciphertexts_fail_cleanly_not_as_the_other_users_data(client, runtime):
    alice = await make_user(runtime, email=f"alice-{uuid.uuid4().hex[:6]}@example.test")
    bob = await make_user(runtime, email=f"bob-{uuid.uuid4().hex[:6]}@example.test")
    a_row, b_row = await load_user(runtime, alice.id), await load_user(runtime, bob.id)
    async with runtime.database.transaction() as session:
        await session.execute(
            update(User).where(User.id == alice.id).values(email_enc=b_row.email_enc)
        )
        await session.execute(
            update(User).where(User.id == bob.id).values(email_enc=a_row.email_enc)
        )

    for actor, other in ((alice, bob), (bob, alice)):
        response = await client.get(f"{API}/users/me", headers=actor.headers)
        # A stored record that fails authentication is a server-side fault (500), answered
        # with the one error shape and no data at all — never the other row's plaintext.
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["code"] == "integrity_error"
        assert error["message"] == "stored user data failed its integrity check"
        assert other.email not in response.text
        assert actor.email not in response.text
    rows = await audit_rows(runtime, "integrity.failure")
    assert {(r.record_id, r.details["column"]) for r in rows} == {
        (str(alice.id), "email"),
        (str(bob.id), "email"),
    }
    assert {r.outcome for r in rows} == {"failure"}


async def test_one_flipped_ciphertext_byte_is_an_integrity_error(client, runtime):
    actor = await make_user(runtime, full_name="Flip Target")
    row = await load_user(runtime, actor.id)
    assert row.last_name_enc is not None
    flipped = bytearray(row.last_name_enc)
    flipped[-1] ^= 0x01
    async with runtime.database.transaction() as session:
        await session.execute(
            update(User).where(User.id == actor.id).values(last_name_enc=bytes(flipped))
        )
    response = await client.get(f"{API}/users/profile", headers=actor.headers)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "integrity_error"
    assert "Flip" not in response.text and "Target" not in response.text
    [audit] = await audit_rows(runtime, "integrity.failure")
    assert audit.details == {"column": "last_name"}


async def test_an_admin_listing_never_shows_garbled_text(client, runtime):
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    victim = await make_user(runtime)
    other = await load_user(runtime, admin.id)
    async with runtime.database.transaction() as session:
        await session.execute(
            update(User).where(User.id == victim.id).values(phone_enc=other.email_enc)
        )
    response = await client.get(f"{API}/users", headers=admin.headers)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "integrity_error"
    assert admin.email not in response.text
    assert PASSWORD not in response.text
