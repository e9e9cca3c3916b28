"""Migration 0006: each sealed full name becomes a sealed first and last name (split at the
first space), `full_name_enc` goes, `last_login_at` arrives; downgrade joins them again.
On SQLite and, when it answers, PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import LargeBinary, Uuid, bindparam, text

from api.app import prepare_runtime
from helpdesk.crypto import decrypt_field, encrypt_field
from helpdesk.migrate import downgrade, upgrade
from helpdesk.runtime import build_runtime
from helpdesk.services import users
from helpdesk.services.users import split_full_name
from helpdesk.settings import Settings
from tests.conftest import make_settings

NAMES = {"beethoven": "Ludwig van Beethoven", "cher": "Cher", "nobody": None}


def test_split_full_name() -> None:
    assert split_full_name("  Ana  de la Cruz ") == ("Ana", "de la Cruz")
    assert split_full_name("Cher") == ("Cher", None)
    assert split_full_name("   ") == (None, None)
    assert split_full_name(None) == (None, None)


async def _round_trip(settings: Settings) -> None:
    url = settings.database_url
    runtime = prepare_runtime(build_runtime(settings))
    try:
        ids: dict[str, uuid.UUID] = {}
        async with runtime.database.transaction() as session:
            for label, name in NAMES.items():
                key = await runtime.keys.create(session)
                user_id = ids[label] = uuid.uuid4()
                sealed = (
                    None
                    if name is None
                    else encrypt_field(key, name, table="users", column="full_name", row_id=user_id)
                )
                await session.execute(
                    text(
                        "INSERT INTO users (id, data_key_id, email_bidx, email_enc, full_name_enc,"
                        " role, is_active, password_hash, mfa_enabled, failed_logins, lockouts,"
                        " created_at, updated_at) VALUES (:id, :k, :b, :e, :n, 'END_USER', true,"
                        " 'x', false, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ).bindparams(
                        bindparam("id", type_=Uuid()),
                        bindparam("k", type_=Uuid()),
                        bindparam("e", type_=LargeBinary()),
                        bindparam("n", type_=LargeBinary()),
                    ),
                    {
                        "id": user_id,
                        "k": key.key_id,
                        "b": label,
                        "e": encrypt_field(
                            key,
                            f"{label}@example.test",
                            table="users",
                            column="email",
                            row_id=user_id,
                        ),
                        "n": sealed,
                    },
                )
        await runtime.database.dispose()

        await asyncio.to_thread(upgrade, url, settings=settings)
        async with runtime.database.transaction() as session:
            found = {}
            for label, user_id in ids.items():
                user = await users.get_user(session, user_id)
                view = await users.view(session, runtime, user)
                found[label] = (view.first_name, view.last_name, user.last_login_at)
        assert found == {
            "beethoven": ("Ludwig", "van Beethoven", None),
            "cher": ("Cher", None, None),
            "nobody": (None, None, None),
        }
        await runtime.database.dispose()

        await asyncio.to_thread(downgrade, url, "0005", settings=settings)
        async with runtime.database.transaction() as session:
            rows = (
                await session.execute(
                    text("SELECT id, data_key_id, full_name_enc FROM users").columns(
                        id=Uuid(), data_key_id=Uuid(), full_name_enc=LargeBinary()
                    )
                )
            ).all()
            back = {}
            for user_id, key_id, blob in rows:
                key = await runtime.keys.get(session, key_id)
                back[user_id] = (
                    None
                    if blob is None
                    else decrypt_field(key, blob, table="users", column="full_name", row_id=user_id)
                )
        assert back == {ids[label]: name for label, name in NAMES.items()}
        await runtime.database.dispose()
        await asyncio.to_thread(upgrade, url, settings=settings)  # leave it at head
    finally:
        await runtime.close()


async def test_migration_0006_splits_sealed_full_names_sqlite(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    url = f"sqlite+aiosqlite:///{var_dir / 'helpdesk.db'}"
    await asyncio.to_thread(upgrade, url, "0005")
    await _round_trip(make_settings(var_dir, database_url=url))


@pytest.mark.postgres
async def test_migration_0006_splits_sealed_full_names_postgres(pg_url, var_dir) -> None:
    await asyncio.to_thread(downgrade, pg_url, "0005")  # empty tables: no keys needed
    await _round_trip(make_settings(var_dir, database_url=pg_url))
